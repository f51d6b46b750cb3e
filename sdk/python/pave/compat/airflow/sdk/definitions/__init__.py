"""``airflow.sdk.definitions``: the trivial re-exports pave provides."""
