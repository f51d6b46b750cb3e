"""``airflow.providers.common.compat``: the names Airflow's providers import through
``airflow.providers.common.compat.sdk`` (and ``.standard.operators``), for those pave supports."""
