"""Making a layer from a pending record: its snapshot in place, its manifest, its record."""

from __future__ import annotations

import os

from ashcore.clock import ctime_now
from ashcore.log import logger
from ashcore.model import Layer, PackageDelta, Status
from ashcore.ondisk import write_json
from ashcore.store import (
    Checkpoint,
    Store,
    now_iso,
)
from ashcore.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


log = logger(__name__)


def make_layer(
    target: Target,
    pending: Any,
    status: Status,
    delta: PackageDelta,
    installed: dict[str, str] | None,
    *,
    taken: Checkpoint | None = None,
    late_until: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Layer:
    """Snapshot the deployment into the pending record's layer and finalize the record.

    With `taken`, `<id>.partial` already holds the snapshot (sealed, or a drift probe);
    `extra`: more fields of its manifest.
    """
    store, fs = target.store, target.fs
    layer_id = pending["id"]
    partial, final = store.partial_path(layer_id), store.layer_path(layer_id)
    checked = taken
    if checked is None:
        if os.path.lexists(partial):
            fs.delete(partial)
        when = ctime_now()
        fs.snapshot(target.root, partial, read_only=True, drop=target.config.lock_files)
        # Every write the snapshot holds is in its transaction or before; any later one has
        # a later transid and a ctime after `when`.
        checked = (fs.info(partial).otransid, when)
    if os.path.lexists(final):  # a reopened layer: its new state replaces the old
        fs.delete(final)
    os.rename(partial, final)
    layer = layer_of(store, pending, status, fs.info(final).uuid, delta)
    write_manifest(store, layer, pending["plugin"], pending["deployment"], installed, extra)
    store.finalize(layer, pending["deployment"], checked, late_until)
    return layer


def layer_of(store: Store, pending: Any, status: Status, uuid: str, delta: PackageDelta) -> Layer:
    """The layer a pending record becomes, finished now."""
    return Layer(
        id=pending["id"],
        name=pending["name"],
        parent=pending["parent"],
        manager=pending["manager"],
        command=pending["command"],
        status=status,
        created=_created(store, pending["id"]),
        finished=now_iso(),
        packages=delta,
        uuid=uuid,
    )


def _created(store: Store, layer_id: int) -> str:
    row = store.db.execute("SELECT created FROM layers WHERE id = ?", (layer_id,)).fetchone()
    return str(row[0]) if row else now_iso()


def write_manifest(
    store: Store,
    layer: Layer,
    plugin: str | None,
    deployment: str | None,
    installed: dict[str, str] | None,
    extra: dict[str, Any] | None = None,
) -> None:
    manifest = layer.to_json() | {"plugin": plugin, "deployment": deployment} | (extra or {})
    if installed is not None:
        manifest["installed"] = installed
    # Not fsynced: a manifest lost to a power cut is told by its uuid and rebuilt by recovery.
    write_json(store.manifest_path(layer.id), manifest, durable=False)
