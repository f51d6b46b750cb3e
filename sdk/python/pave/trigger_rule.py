"""Trigger rules (Airflow's ``TriggerRule``), as a ``str`` enum."""

from __future__ import annotations

import enum

from .exceptions import AirflowException


class TriggerRule(str, enum.Enum):
    """When a task may run, given the states of its upstream tasks."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def is_valid(cls, value: str) -> bool:
        return value in cls.all_triggers()

    @classmethod
    def all_triggers(cls) -> set[str]:
        return {r.value for r in cls}


def check_trigger_rule(value: object, task_id: str) -> str:
    """The rule's string value; an error naming the task for an unknown rule."""
    text = value.value if isinstance(value, TriggerRule) else value
    if not isinstance(text, str) or text not in TriggerRule.all_triggers():
        valid = ", ".join(sorted(TriggerRule.all_triggers()))
        raise AirflowException(
            f"task `{task_id}`: unknown trigger rule {value!r}; valid trigger rules: {valid}"
        )
    return text
