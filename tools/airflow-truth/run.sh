#!/usr/bin/env bash
# Record what real Airflow 3 does with pave's scenarios.
#
#   tools/airflow-truth/run.sh [--mode inprocess|cli] [--home DIR] [scenario names...]
#
# Creates (once) a virtual environment with the pinned Airflow from
# requirements.txt, then runs airflow_truth.py in it. Every run uses a fresh
# temporary AIRFLOW_HOME (printed first) holding the generated DAG files, the
# metadata database and one log per scenario.
# Environment: AIRFLOW_TRUTH_VENV (default tools/airflow-truth/.venv),
#              PYTHON (interpreter used to create the venv; default python3).
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
exec "$venv/bin/python" "$here/airflow_truth.py" "$@"
