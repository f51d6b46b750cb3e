from pave.baseoperator import BaseOperator  # noqa: F401
from pave.operators import chain, chain_linear, cross_downstream  # noqa: F401
