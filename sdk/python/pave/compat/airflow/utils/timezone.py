"""``airflow.utils.timezone``: UTC helpers."""

import datetime as _dt

utc = _dt.timezone.utc


def datetime(*args, **kwargs) -> _dt.datetime:  # noqa: ANN002, ANN003
    """A datetime in UTC unless ``tzinfo`` is given."""
    kwargs.setdefault("tzinfo", utc)
    return _dt.datetime(*args, **kwargs)


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(utc)
