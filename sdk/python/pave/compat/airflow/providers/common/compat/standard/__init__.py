"""``airflow.providers.common.compat.standard``: only ``operators``."""
