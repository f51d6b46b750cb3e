"""Importing a DAG file the way pave's parser and runtime both do.

The file is imported as a fresh module (a unique name derived from its
path, as Airflow does), with ``pave/compat`` first on ``sys.path`` so that
``import airflow...`` resolves to pave's compatibility package, and with the
file's folder on ``sys.path`` so that it can import its neighbours. DAGs are
collected the way Airflow 3 does: those registered by ``with DAG(...)``
blocks and ``@dag`` calls, plus DAG objects in the module's globals.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import types

from .dag import DAG, take_registered

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


try:
    # The one hash the loader needs, without `hashlib`'s OpenSSL (3.6 MiB
    # mapped, half a MiB of it dirty, in every zygote and so every fork).
    from _sha1 import sha1 as _sha1
except ImportError:  # an interpreter built without its own SHA-1
    from hashlib import sha1 as _sha1

COMPAT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat")


class _PendulumFallback:
    """Provides a tiny stdlib ``pendulum`` when the real one is not installed
    (Airflow DAG files often use ``pendulum.datetime(...)``). It sits last on
    ``sys.meta_path``, so an installed pendulum always wins. (A plain meta
    path finder: ``importlib.abc`` would import ``importlib.resources``,
    ``tempfile``, ``shutil``, ``bz2``, ``lzma``..., 0.8 MiB in every zygote.)"""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "pendulum":
            return None
        shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pendulum.py")
        return importlib.util.spec_from_file_location("pendulum", shim)


def enable_compat() -> None:
    """Put the ``airflow`` compatibility package (and the pendulum fallback) in reach."""
    if COMPAT_DIR not in sys.path:
        sys.path.insert(0, COMPAT_DIR)
    if not any(isinstance(f, _PendulumFallback) for f in sys.meta_path):
        sys.meta_path.append(_PendulumFallback())


def module_name_for(path: str) -> str:
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    digest = _sha1(path.encode("utf-8")).hexdigest()[:16]
    return f"unusual_prefix_{digest}_{stem}"


def load_dag_file(path: str) -> tuple[types.ModuleType, list[DAG]]:
    """Import ``path``; the module and every DAG it defines, in definition order."""
    path = os.path.abspath(path)
    enable_compat()
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(1, folder)
    name = module_name_for(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    take_registered()
    try:
        spec.loader.exec_module(module)
    except BaseException:
        take_registered()
        sys.modules.pop(name, None)
        raise
    dags: list[DAG] = []
    for candidate in take_registered() + list(vars(module).values()):
        if isinstance(candidate, DAG) and not any(candidate is d for d in dags):
            dags.append(candidate)
    return module, dags


def error_report(exc: BaseException, path: str) -> dict[str, Any]:
    """``{"file", "line", "message", "traceback"}`` for an error of a DAG file."""
    import traceback  # only on an error: the zygote and its tasks do without it

    full = os.path.abspath(path)
    line: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == full:
        line = exc.lineno
    if line is None:
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if os.path.abspath(frame.f_code.co_filename) == full:
                line = lineno
    if line is None:
        obj = getattr(exc, "obj", None)
        file = getattr(obj, "_def_file", None) or getattr(obj, "fileloc", None)
        if file and os.path.abspath(file) == full:
            line = getattr(obj, "_def_line", None)
    return {
        "file": path,
        "line": line,
        "message": _message(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def _message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    text = str(exc)
    if isinstance(exc, ImportError):
        m = re.match(r"cannot import name '([^']+)' from '(airflow[\w.]*)'", text)
        if m:
            return (f"ImportError: pave does not support `{m.group(1)}` from `{m.group(2)}` yet "
                    "(pave's Airflow compatibility package does not provide it)")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
