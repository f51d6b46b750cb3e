from pave.params import Param, ParamsDict  # noqa: F401
