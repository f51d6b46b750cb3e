"""Edge labels: ``a >> Label("no errors") >> b`` (Airflow's ``EdgeModifier``).

A label only names an edge in Airflow's UI; it changes nothing in how a run
behaves. pave sets the dependencies it stands between (every task on its
left upstream of every task on its right) and drops the text.
"""

from __future__ import annotations


from ._deps import DependencyMixin, _link

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


class EdgeModifier(DependencyMixin):
    """Stands between tasks in ``>>`` chains; the edges it makes carry ``label`` (unused by pave)."""

    def __init__(self, label: str | None = None) -> None:
        self.label = label
        self._upstream: list[DependencyMixin] = []
        self._downstream: list[DependencyMixin] = []

    def _dep_nodes(self) -> list[Any]:
        return []

    def _dep_dag(self) -> Any:
        return None

    def _add_upstream(self, up: DependencyMixin) -> None:
        self._upstream.append(up)
        for down in self._downstream:
            _link(up, down)

    def _add_downstream(self, down: DependencyMixin) -> None:
        self._downstream.append(down)
        for up in self._upstream:
            _link(up, down)

    def __repr__(self) -> str:
        return f"Label({self.label!r})"


def Label(label: str) -> EdgeModifier:  # noqa: N802 - Airflow's name
    """An edge label: ``a >> Label("text") >> b``."""
    return EdgeModifier(label)
