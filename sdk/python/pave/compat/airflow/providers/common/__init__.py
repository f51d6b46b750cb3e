"""``airflow.providers.common``: only ``compat`` (the common.compat provider's re-exports)."""
