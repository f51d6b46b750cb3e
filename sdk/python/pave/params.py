"""DAG params (Airflow's ``Param``): a default plus a small JSON schema.

pave's spec knows ``type``, ``enum``, ``minimum``, ``maximum`` and
``description``. UI-only keywords (``title``, ``description_md``,
``section``, ``values_display``, ``examples``, ``format`` hints for the form)
are accepted and ignored; any other validation keyword is refused, because
pave would not enforce it.
"""

from __future__ import annotations


from ._util import NOTSET
from .exceptions import ParamValidationError, unsupported

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


_SCHEMA_KEYS = ("type", "enum", "minimum", "maximum")
_UI_ONLY = ("title", "description_md", "section", "values_display", "examples", "const_display")


class Param:
    """A DAG param: ``Param(3, type="integer", minimum=1, description=...)``."""

    def __init__(self, default: Any = NOTSET, description: str | None = None, **schema: Any) -> None:
        self.value = default
        self.description = description
        self.schema: dict[str, Any] = {}
        for key, val in schema.items():
            if key in _SCHEMA_KEYS:
                self.schema[key] = val
            elif key in _UI_ONLY:
                continue
            else:
                raise unsupported(f"the Param schema keyword `{key}`")
        self._check()

    @property
    def has_value(self) -> bool:
        return self.value is not NOTSET

    def resolve(self, value: Any = NOTSET) -> Any:
        """The param's value (Airflow's ``Param.resolve``)."""
        if value is NOTSET:
            value = self.value
        if value is NOTSET:
            raise ParamValidationError("No value passed and Param has no default value")
        return value

    def _check(self) -> None:
        if not self.has_value:
            return
        enum = self.schema.get("enum")
        if enum is not None and self.value not in enum:
            raise ParamValidationError(f"Param default {self.value!r} is not one of {enum!r}")
        for bound, ok in (("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b)):
            limit = self.schema.get(bound)
            if limit is not None and isinstance(self.value, (int, float)) and not ok(self.value, limit):
                raise ParamValidationError(f"Param default {self.value!r} violates {bound} {limit!r}")

    def dump(self) -> dict[str, Any]:
        """The param spec for the JSON document."""
        out: dict[str, Any] = {}
        if self.has_value:
            out["default"] = self.value
        for key in _SCHEMA_KEYS:
            if key in self.schema and self.schema[key] is not None:
                out[key] = self.schema[key]
        if self.description:
            out["description"] = self.description
        return out

    def __repr__(self) -> str:
        return f"Param({self.value!r}, {self.schema!r})"


class ParamsDict(dict):
    """``dag.params``: name -> value (a plain value or a ``Param``)."""

    def __setitem__(self, key: str, value: Any) -> None:
        current = self.get(key)
        if isinstance(current, Param) and not isinstance(value, Param):
            current.value = value
            current._check()
            return
        super().__setitem__(key, value)

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.items():
            out[name] = value.dump() if isinstance(value, Param) else {"default": value}
        return out
