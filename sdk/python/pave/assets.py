"""Assets (Airflow 3's name; ``Dataset`` is the Airflow 2 alias).

The JSON spec v1 has no field for assets, so they are recorded on the task
(``inlets``/``outlets``) and otherwise ignored. Asset-based scheduling
(``schedule=[Asset(...)]``) is refused at parse time.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


class BaseAsset:
    """Common base of assets and asset conditions."""

    def __and__(self, other: "BaseAsset") -> "AssetAll":
        return AssetAll(self, other)

    def __or__(self, other: "BaseAsset") -> "AssetAny":
        return AssetAny(self, other)


class Asset(BaseAsset):
    """A named piece of data a task reads or writes."""

    def __init__(self, name: str | None = None, uri: str | None = None, *, group: str = "asset",
                 extra: dict[str, Any] | None = None, watchers: Any = None) -> None:
        if name is None and uri is None:
            raise TypeError("Asset() needs a name or a uri")
        self.name = name if name is not None else uri
        self.uri = uri if uri is not None else name
        self.group = group
        self.extra = dict(extra or {})

    def __repr__(self) -> str:
        return f"Asset(name={self.name!r}, uri={self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Asset) and (self.name, self.uri) == (other.name, other.uri)

    def __hash__(self) -> int:
        return hash((self.name, self.uri))


class AssetAlias(BaseAsset):
    def __init__(self, name: str, group: str = "asset") -> None:
        self.name, self.group = name, group


class AssetAll(BaseAsset):
    def __init__(self, *objects: BaseAsset) -> None:
        self.objects = list(objects)


class AssetAny(BaseAsset):
    def __init__(self, *objects: BaseAsset) -> None:
        self.objects = list(objects)


Dataset = Asset
DatasetAlias = AssetAlias
DatasetAll = AssetAll
DatasetAny = AssetAny
