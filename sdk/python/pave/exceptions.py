"""Exceptions raised by DAG files, task code and the SDK itself.

The Airflow names (``AirflowSkipException``, ``AirflowFailException``, ...)
are the canonical ones so that unmodified Airflow DAG files work; pave's own
short aliases (``TaskSkipped``, ``TaskFailed``) are the same classes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


class AirflowException(Exception):
    """Base class of every error the SDK raises (Airflow's name)."""


class AirflowSkipException(AirflowException):
    """Raise in a task to mark its task instance ``skipped`` (exit code 99)."""


class AirflowFailException(AirflowException):
    """Raise in a task to fail it without using its remaining retries (exit code 98)."""


class AirflowTaskTimeout(AirflowException):
    """The task ran past its ``execution_timeout``."""


class DuplicateTaskIdFound(AirflowException):
    """Two tasks of one DAG have the same id."""


class AirflowDagCycleException(AirflowException):
    """The task dependencies of a DAG form a cycle."""


class AirflowDagDuplicatedIdException(AirflowException):
    """One DAG file defines two DAGs with the same id."""


class ParamValidationError(AirflowException):
    """A param's default does not match its schema."""


class XComNotFound(AirflowException):
    """An XCom a task needs was never pushed."""

    def __init__(self, dag_id: str, task_id: str, key: str) -> None:
        super().__init__(
            f"XComArg result from {task_id} at {dag_id} with key={key!r} is not found!"
        )
        self.dag_id, self.task_id, self.key = dag_id, task_id, key


class PaveUnsupportedError(AirflowException):
    """A feature of Airflow that pave does not support (yet).

    Raised at parse time, so that a DAG never runs with silently different
    behaviour.
    """

    def __init__(self, message: str, obj: Any = None) -> None:
        super().__init__(message)
        self.obj = obj


class PaveSpecError(AirflowException):
    """A DAG cannot be turned into a spec (bad value, cycle, ...).

    ``obj`` is the DAG, task or group it is about; its definition line is
    reported when the error arises after the DAG file ran.
    """

    def __init__(self, message: str, obj: Any = None) -> None:
        super().__init__(message)
        self.obj = obj


#: pave-style aliases.
TaskSkipped = AirflowSkipException
TaskFailed = AirflowFailException


def unsupported(what: str, obj: Any = None) -> PaveUnsupportedError:
    """The standard "not supported" error: ``pave does not support WHAT yet``."""
    return PaveUnsupportedError(f"pave does not support {what} yet", obj)
