"""``airflow.datasets`` (Airflow 2): ``Dataset`` is pave's ``Asset``."""

from pave.assets import Dataset, DatasetAlias, DatasetAll, DatasetAny  # noqa: F401
