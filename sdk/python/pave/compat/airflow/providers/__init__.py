"""``airflow.providers``: only the standard provider's core operators."""
