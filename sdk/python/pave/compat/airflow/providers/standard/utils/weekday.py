"""``airflow.providers.standard.utils.weekday``: the ``WeekDay`` enum (ISO day numbers)."""

from __future__ import annotations

import enum
from collections.abc import Iterable

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


@enum.unique
class WeekDay(enum.IntEnum):
    """Days of the week, numbered as in ISO 8601 (Monday is 1)."""

    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7

    @classmethod
    def get_weekday_number(cls, week_day_str: str) -> "WeekDay":
        """The day named ``week_day_str`` (any case): ``"Sunday"`` is ``WeekDay.SUNDAY``."""
        name = week_day_str.upper()
        if name not in cls.__members__:
            raise AttributeError(f'Invalid Week Day passed: "{week_day_str}"')
        return cls[name]

    @classmethod
    def convert(cls, day: "str | WeekDay") -> int:
        """The ISO number of a day given as a ``WeekDay`` or its name."""
        return day if isinstance(day, WeekDay) else cls.get_weekday_number(week_day_str=day)

    @classmethod
    def validate_week_day(cls, week_day: Any) -> set[int]:
        """The set of ISO day numbers of a day, a day name, or an iterable of them."""
        if not isinstance(week_day, Iterable):
            if not isinstance(week_day, WeekDay):
                raise TypeError(
                    f"Unsupported Type for week_day parameter: {type(week_day)}."
                    "Input should be iterable type:str, set, list, dict or Weekday enum type"
                )
            week_day = {week_day}
        if isinstance(week_day, str):
            week_day = {week_day}
        return {cls.convert(item) for item in week_day}
