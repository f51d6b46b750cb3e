"""``>>``/``<<`` and ``set_upstream``/``set_downstream``, shared by tasks,
XComArgs and task groups (Airflow's ``DependencyMixin``)."""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


class DependencyMixin:
    """Something that can sit on either side of ``>>``.

    Subclasses implement ``_dep_nodes()``: the tasks or groups the edge
    attaches to, and ``_dep_dag()``: the DAG they belong to.
    """

    def _dep_nodes(self) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _dep_dag(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_upstream(self, other: Any) -> None:
        """Make ``other`` (a task, XComArg, group, or a list of them) run before this."""
        for up in _flatten(other):
            _link(up, self)

    def set_downstream(self, other: Any) -> None:
        """Make ``other`` (a task, XComArg, group, or a list of them) run after this."""
        for down in _flatten(other):
            _link(self, down)

    def __rshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Any:
        """``[a, b] >> self``."""
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Any:
        """``[a, b] << self``."""
        self.set_downstream(other)
        return self

    def __enter__(self) -> Any:
        from .exceptions import unsupported

        raise unsupported("setup/teardown context managers (`with setup >> teardown:`)")

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover
        return None


def _flatten(other: Any) -> list[DependencyMixin]:
    if isinstance(other, DependencyMixin):
        return [other]
    if isinstance(other, Sequence) and not isinstance(other, str) or isinstance(other, (set, frozenset)):
        out: list[DependencyMixin] = []
        for item in other:
            out.extend(_flatten(item))
        return out
    raise TypeError(
        f"cannot set a dependency with {other!r}: expected a task, an XComArg, a task group or a list of them"
    )


def _link(up: DependencyMixin, down: DependencyMixin) -> None:
    from .edges import EdgeModifier

    if isinstance(down, EdgeModifier):  # a >> Label(...): remembered until the label's downstream is known
        down._add_upstream(up)
        return
    if isinstance(up, EdgeModifier):
        up._add_downstream(down)
        return
    dag = up._dep_dag() or down._dep_dag()
    if dag is None:
        raise TypeError(
            "cannot set a dependency between tasks that belong to no DAG; "
            "create them inside `with DAG(...)`, a `@dag` function, or pass dag=..."
        )
    for u in up._dep_nodes():
        for d in down._dep_nodes():
            dag._add_edge(u, d)
