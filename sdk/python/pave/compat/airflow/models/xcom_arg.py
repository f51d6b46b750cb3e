from pave.xcom_arg import XComArg  # noqa: F401
