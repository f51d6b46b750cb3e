from pave.exceptions import (  # noqa: F401
    AirflowException, AirflowFailException, AirflowSkipException, AirflowTaskTimeout,
    DuplicateTaskIdFound, ParamValidationError, XComNotFound,
)
