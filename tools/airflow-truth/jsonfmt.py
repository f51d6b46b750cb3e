"""Readable, stable JSON for scenario and truth files: one task or task instance a line."""

from __future__ import annotations

import json
from typing import Any

INLINE_WIDTH = 100


def _inline(value: Any) -> str:
    """Compact one-line JSON with a space after separators."""
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def dumps(value: Any, indent: int = 0) -> str:
    """JSON text where every list item or object that fits in INLINE_WIDTH stays on one line."""
    pad = "  " * indent
    if isinstance(value, dict) and indent > 0 and len(pad) + len(_inline(value)) <= INLINE_WIDTH:
        return _inline(value)
    if isinstance(value, dict) and value:
        items = [f'{pad}  {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{pad}  {dumps(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return _inline(value)


def dump_file(value: Any) -> str:
    """File contents for ``value``: formatted JSON plus a final newline."""
    return dumps(value) + "\n"
