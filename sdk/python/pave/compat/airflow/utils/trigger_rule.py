from pave.trigger_rule import TriggerRule  # noqa: F401
