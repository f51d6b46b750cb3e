"""``airflow.providers.standard.utils``: only ``weekday``."""
