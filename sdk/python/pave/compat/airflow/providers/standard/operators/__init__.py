"""``airflow.providers.standard.operators``."""
