"""``context["macros"]``: Airflow's macros module, on the standard library.

The same names as ``airflow.sdk.execution_time.macros``: ``ds_add``,
``ds_format``, ``datetime``, ``timedelta``, ``json``, ``time``, ``uuid``,
``random``; ``dateutil``, ``yaml``, ``datetime_diff_for_humans`` (pendulum)
and ``ds_format_locale`` (babel) need those packages, as in Airflow. (In
Jinja templates, which pave renders in Rust, ``macros.ds_add`` and
``macros.ds_format`` are available.)
"""

from __future__ import annotations

import importlib
import json  # noqa: F401
import time  # noqa: F401
from datetime import datetime, timedelta

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


def ds_add(ds: str, days: int) -> str:
    """Add or subtract days from a ``YYYY-MM-DD`` date: ``ds_add("2015-01-01", 5)`` is ``"2015-01-06"``."""
    if not days:
        return str(ds)
    return (datetime.strptime(str(ds), "%Y-%m-%d") + timedelta(days=days)).strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """``ds`` read with ``input_format`` and written with ``output_format``."""
    return datetime.strptime(str(ds), input_format).strftime(output_format)


def datetime_diff_for_humans(dt: Any, since: Any = None) -> str:
    import pendulum

    if not hasattr(pendulum, "instance"):
        raise ModuleNotFoundError("macros.datetime_diff_for_humans needs the pendulum package", name="pendulum")
    return pendulum.instance(dt).diff_for_humans(since)


def ds_format_locale(ds: str, input_format: str, output_format: str, locale: Any = None) -> str:
    from babel import Locale
    from babel.dates import LC_TIME, format_datetime

    return format_datetime(datetime.strptime(str(ds), input_format), format=output_format,
                           locale=locale or LC_TIME or Locale("en_US"))


def __getattr__(name: str) -> Any:
    # `random` and `uuid` are imported when first used: every task's context
    # has this module and few tasks use them, but the zygote (which imports
    # this module) would hold them, and `platform`, in every task it forks.
    if name == "random":
        from random import random

        return random
    if name in ("uuid", "dateutil", "yaml"):
        return importlib.import_module(name)
    raise AttributeError(f"pave's macros have no `{name}` (Airflow's macros module has no such name either)")


def __dir__() -> list[str]:
    return sorted({*globals(), "random", "uuid"})
