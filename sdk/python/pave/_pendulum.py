"""A tiny stand-in for ``pendulum`` on the standard library, used only when
the real pendulum is not installed (see loader._PendulumFallback): enough
for the way DAG files use it (``pendulum.datetime(2025, 1, 1, tz="UTC")``,
``pendulum.duration(hours=1)``, ``pendulum.timezone("Europe/Paris")``)."""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


DateTime = _dt.datetime
Date = _dt.date
Duration = _dt.timedelta
UTC = ZoneInfo("UTC")


def timezone(name: Any) -> Any:
    return ZoneInfo(name) if isinstance(name, str) else name


def _tz(tz: Any) -> Any:
    return UTC if tz is None else timezone(tz)


def datetime(year: int, month: int = 1, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0,
             microsecond: int = 0, tz: Any = UTC, **_: Any) -> _dt.datetime:
    return _dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=_tz(tz) if tz is not None else None)


def duration(days: float = 0, seconds: float = 0, microseconds: float = 0, milliseconds: float = 0,
             minutes: float = 0, hours: float = 0, weeks: float = 0, **_: Any) -> _dt.timedelta:
    return _dt.timedelta(days=days, seconds=seconds, microseconds=microseconds, milliseconds=milliseconds,
                         minutes=minutes, hours=hours, weeks=weeks)


def now(tz: Any = UTC) -> _dt.datetime:
    return _dt.datetime.now(_tz(tz))


def today(tz: Any = UTC) -> _dt.datetime:
    return now(tz).replace(hour=0, minute=0, second=0, microsecond=0)


def yesterday(tz: Any = UTC) -> _dt.datetime:
    return today(tz) - _dt.timedelta(days=1)


def parse(text: str, tz: Any = UTC, **_: Any) -> _dt.datetime:
    value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=_tz(tz))


def naive(year: int, month: int = 1, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0) -> _dt.datetime:
    return _dt.datetime(year, month, day, hour, minute, second)
