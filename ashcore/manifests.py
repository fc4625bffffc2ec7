"""A layer's manifest: its record as JSON beside its snapshot (`layers/<id>.json`), from
which `doctor --repair` rebuilds the database. The store writes it (`Store` is a
`Manifests`): no other module writes a manifest."""

from __future__ import annotations

import os

from ashcore.model import Layer, Origin
from ashcore.ondisk import read_json, write_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Manifests:
    """The manifest half of `Store`: one writer of a layer's manifest, as the store is the one
    writer of its row."""

    layers_dir: str

    def manifest_path(self, layer_id: int) -> str:
        return os.path.join(self.layers_dir, f"{layer_id}.json")

    def write_manifest(
        self,
        layer: Layer,
        origin: Origin | None,
        deployment: str | None,
        installed: dict[str, str] | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """The whole manifest of `layer`: its record, where it comes from (None: unknown),
        the deployment it was made on, the installed set when known, and `extra` fields."""
        plugin = origin.to_text() if origin is not None else None
        manifest = layer.to_json() | {"plugin": plugin, "deployment": deployment} | (extra or {})
        if installed is not None:
            manifest["installed"] = installed
        # Not fsynced: a manifest lost to a power cut is told by its uuid and rebuilt by
        # recovery.
        write_json(self.manifest_path(layer.id), manifest, durable=False)

    def amend_manifest(
        self, layer_id: int, key: str, value: object, *, durable: bool = True
    ) -> None:
        """Set one field of the layer's manifest (none is written when it has none)."""
        manifest = read_json(self.manifest_path(layer_id))
        if isinstance(manifest, dict):
            manifest[key] = value
            write_json(self.manifest_path(layer_id), manifest, durable=durable)
