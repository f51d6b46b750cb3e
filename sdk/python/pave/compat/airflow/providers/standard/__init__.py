"""``airflow.providers.standard``."""
