"""``airflow.utils``: only the trivial helpers."""
