"""Small helpers shared by the SDK: value conversion and definition lines."""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import sys

from .exceptions import PaveSpecError

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


_PAVE_DIR = os.path.dirname(os.path.abspath(__file__))
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")

#: Marks "argument not given" where ``None`` is a meaningful value.
NOTSET: Any = type("ArgNotSet", (), {"__repr__": lambda self: "NOTSET"})()


def caller_line() -> tuple[str | None, int | None]:
    """(file, line) of the innermost frame outside the pave package.

    Recorded on DAGs, tasks and groups so that errors found after the DAG
    file ran (a cycle, a bad value) can still name the line that made them.
    """
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PAVE_DIR + os.sep):
            return filename, frame.f_lineno
        frame = frame.f_back
    return None, None


def check_id(value: Any, what: str) -> str:
    """``value`` if it is a valid task/DAG/group id, else an error naming it."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise PaveSpecError(
            f"{what} {value!r} is not valid: use 1 to 250 letters, digits, `_`, `-` and `.`"
        )
    return value


def duration_seconds(value: Any, field: str) -> float | int | None:
    """A duration (``timedelta`` or seconds) as seconds for the spec."""
    if value is None:
        return None
    if isinstance(value, _dt.timedelta):
        seconds: Any = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value
    else:
        raise PaveSpecError(
            f"`{field}` must be a datetime.timedelta or a number of seconds, got {value!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise PaveSpecError(f"`{field}` must be a non-negative duration, got {value!r}")
    return int(seconds) if float(seconds).is_integer() else float(seconds)


def _as_datetime(value: Any, field: str) -> _dt.datetime:
    """A datetime, or a date as its midnight; anything else is an error naming ``field``."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return _dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, _dt.datetime):
        raise PaveSpecError(f"`{field}` must be a datetime, got {value!r}")
    return value


def date_text(value: Any, field: str) -> str | None:
    """A date for the spec: aware dates in UTC (``...Z``), naive ones as
    written (pave reads them in the DAG's time zone, as Airflow does)."""
    if value is None or isinstance(value, str):
        return value
    value = _as_datetime(value, field)
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(microsecond=0).isoformat() if not value.microsecond else value.isoformat()
    utc = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return utc.isoformat() + "Z"


def task_date(value: Any, field: str) -> Any:
    """A task's ``start_date``/``end_date`` as Airflow keeps it: a datetime
    in UTC, a naive one (or a date) taken as UTC, Airflow's default time
    zone (``BaseOperator`` calls ``convert_to_utc``); a string, which only
    ``default_args`` may carry in Airflow, is kept for pave to read in the
    DAG's time zone, as Airflow's DAG parses it."""
    if value is None or isinstance(value, str):
        return value
    value = _as_datetime(value, field)
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)


def timezone_name(value: Any) -> str | None:
    """The IANA name of a datetime's time zone, or None when it has none."""
    if not isinstance(value, _dt.datetime) or value.tzinfo is None:
        return None
    tz = value.tzinfo
    for attr in ("key", "name", "zone"):  # zoneinfo, pendulum, pytz
        name = getattr(tz, attr, None)
        if isinstance(name, str) and ("/" in name or name in ("UTC", "GMT")):
            return "UTC" if name in ("GMT", "Etc/UTC") else name
    offset = value.utcoffset()
    if offset is None:
        return None
    seconds = int(offset.total_seconds())
    if seconds == 0:
        return "UTC"
    if seconds % 3600 == 0:
        # IANA's Etc/GMT zones have the sign inverted (Etc/GMT-2 is UTC+2).
        hours = seconds // 3600
        return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"
    raise PaveSpecError(
        f"the time zone of {value.isoformat()} is a fixed offset that has no IANA name; "
        "use zoneinfo.ZoneInfo('Area/City') or UTC"
    )


def json_problem(value: Any, path: str = "") -> str | None:
    """Why ``value`` is not plain JSON (naming the offending type), or None."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"a non-finite float ({value!r}){path}"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = json_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict key of type {type_name(key)} ({key!r}){path}; keys must be strings"
            problem = json_problem(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    where = f" at {path}" if path else ""
    return f"a {type_name(value)}{where}"


def type_name(value: Any) -> str:
    """``numpy.ndarray``-style name of a value's type (builtins unqualified)."""
    cls = type(value)
    module = cls.__module__
    if module in ("builtins", None):
        return cls.__qualname__
    return f"{module.split('.')[0] if module.startswith('numpy') else module}.{cls.__qualname__}"


def is_json(value: Any) -> bool:
    return json_problem(value) is None


def callable_name(func: Any) -> str:
    """A readable dotted name for a callable (informational in the spec)."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not name:
        name = type(func).__qualname__
    name = name.replace(".<locals>", "").replace("<lambda>", "lambda")
    return name
