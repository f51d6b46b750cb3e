from pave.assets import Asset, AssetAlias, AssetAll, AssetAny, BaseAsset  # noqa: F401
