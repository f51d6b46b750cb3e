"""pave's Airflow compatibility package.

Only the authoring surface pave supports is here (see DESIGN.md, "Airflow
compatibility"). Importing any other ``airflow.*`` module raises
``ModuleNotFoundError`` saying that pave does not support it yet, instead of
a bare "No module named ...".
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


__version__ = "3.0.0"
_ROOT = os.path.dirname(os.path.abspath(__file__))


class _UnsupportedAirflowModules:
    """Turns a missing ``airflow.X`` module of this package into a clear error.
    (A plain meta path finder: ``importlib.abc`` would import
    ``importlib.resources``, ``tempfile``, ``shutil``..., into every zygote.)"""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not fullname.startswith("airflow."):
            return None
        parent = sys.modules.get(fullname.rpartition(".")[0])
        parent_file = getattr(parent, "__file__", None) or ""
        if parent is None or not os.path.abspath(parent_file).startswith(_ROOT + os.sep):
            return None  # not our package: leave it to the normal import system
        search = getattr(parent, "__path__", None)
        if search is None or importlib.machinery.PathFinder.find_spec(fullname, search) is not None:
            return None
        raise ModuleNotFoundError(
            f"pave does not support the Airflow module `{fullname}` yet "
            "(pave's Airflow compatibility package provides airflow.sdk, airflow.decorators, "
            "airflow.models, airflow.operators.*, airflow.providers.standard.operators.*, "
            "airflow.providers.common.compat.sdk, airflow.exceptions and "
            "airflow.utils.{trigger_rule,task_group,dates,timezone,edgemodifier})",
            name=fullname,
        )


if not any(isinstance(f, _UnsupportedAirflowModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _UnsupportedAirflowModules())

from pave.dag import DAG  # noqa: E402

__all__ = ["DAG", "__version__"]
