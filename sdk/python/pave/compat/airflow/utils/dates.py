"""``airflow.utils.dates`` (Airflow 2): ``days_ago``."""

import datetime as _dt


def days_ago(n: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0) -> _dt.datetime:
    """Midnight UTC (or the given time) ``n`` days ago."""
    today = _dt.datetime.now(_dt.timezone.utc).replace(
        hour=hour, minute=minute, second=second, microsecond=microsecond)
    return today - _dt.timedelta(days=n)
