"""``python -m pave.parse FILE``: print the JSON spec of a Python DAG file.

Exit 0 with ``{"spec_version": 1, "dags": [...]}`` on stdout; exit 1 with
``{"error": {"file", "line", "message", "traceback"}}`` on stdout when the
file cannot be imported or its DAGs cannot be turned into a spec (syntax
error, an exception in the file, an unsupported feature, a cycle). What the
DAG file itself prints goes to stderr, so stdout stays one JSON document.
"""

from __future__ import annotations

import contextlib
import json
import sys

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


def parse_file(path: str) -> dict[str, Any]:
    """The spec document of the DAG file ``path`` (raises on any error)."""
    import os

    from .loader import load_dag_file
    from .spec import to_spec_document

    _, dags = load_dag_file(path)
    return to_spec_document(dags, fileloc=os.path.abspath(path))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m pave.parse DAG_FILE.py", file=sys.stderr)
        return 2
    path = args[0]
    out = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            text = json.dumps(parse_file(path), ensure_ascii=False, allow_nan=False)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - every error is reported
        from .loader import error_report

        out.write(json.dumps({"error": error_report(exc, path)}, ensure_ascii=False) + "\n")
        out.flush()
        return 1
    out.write(text + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
