from pave.context import Context, get_current_context  # noqa: F401
