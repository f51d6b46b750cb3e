"""``airflow.exceptions``."""

from pave.exceptions import (  # noqa: F401
    AirflowDagCycleException, AirflowDagDuplicatedIdException, AirflowException,
    AirflowFailException, AirflowSkipException, AirflowTaskTimeout, DuplicateTaskIdFound,
    ParamValidationError, XComNotFound,
)
