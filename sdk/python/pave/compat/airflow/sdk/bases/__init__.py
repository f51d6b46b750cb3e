"""``airflow.sdk.bases``."""
