#!/usr/bin/env bash
# Record what real Airflow 3 does with ordinary DAG files (by default the
# differential suite tests/airflow_compat/dags/*.py -> tests/airflow_compat/truth/).
#
#   tools/airflow-truth/run_dag_files.sh [--mode inprocess|cli] [--home DIR] [--out DIR] [files...]
#
# Uses (and creates once, like run.sh) the virtual environment with the pinned
# Airflow. Environment: AIRFLOW_TRUTH_VENV (default tools/airflow-truth/.venv),
#                       PYTHON (interpreter used to create the venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${AIRFLOW_TRUTH_VENV:-$here/.venv}"

if [[ ! -x "$venv/bin/airflow" ]]; then
    echo "creating $venv with the pinned Airflow (takes a minute)" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
fi

export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" "$here/airflow_dag_files.py" "$@"
