"""``airflow.utils.edgemodifier``: edge labels (``Label``)."""

from pave.edges import EdgeModifier, Label  # noqa: F401
