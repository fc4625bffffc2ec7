"""Recovery: closing a transaction whose owner is gone, and telling whether one still runs.

A transaction's owner (the package manager) may die at any line of begin, seal or describe:
the next begin, `doctor`, or a command that changes the set of layers finds its pending
record and finishes what the steps left, as a layer marked interrupted (or, when only the
description was lost, the layer its post hook sealed).
"""

from __future__ import annotations

import os

from ashcore.describe import before_of, describe, sealed_of
from ashcore.drift import NO_OWNER
from ashcore.errors import UsageError
from ashcore.layers import layer_of, make_layer
from ashcore.log import logger
from ashcore.model import Layer, Origin, PackageDelta, Status
from ashcore.ondisk import read_json
from ashcore.process import is_alive, pid_of
from ashcore.registry import database_of
from ashcore.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ashcore.model import PackageDatabase

log = logger(__name__)


def recover(target: Target, pending: Any, database: PackageDatabase | None) -> Layer | None:
    """Close a transaction whose owner is gone. Returns the layer it leaves, if any.

    `database` must be the database face of the pending transaction's manager, or None.
    """
    store, fs = target.store, target.fs
    layer_id = pending["id"]
    partial, final = store.partial_path(layer_id), store.layer_path(layer_id)
    sealed = sealed_of(target, pending)
    if sealed is not None:  # its post hook sealed it: only the description was lost
        layer = describe(target, pending, sealed, database, None, None)
        log.warning("ashlayers: described layer %d, sealed by a run whose helper is gone", layer_id)
        return layer
    # A manifest exists before the commit only for a reopened layer (apt's second dpkg run;
    # late writes an earlier version folded in): its record is known, only its snapshot was
    # being replaced.
    manifest = read_json(store.manifest_path(layer_id))
    known = isinstance(manifest, dict) and manifest.get("status") not in (None, "pending")
    if (
        known
        and not os.path.lexists(final)
        and os.path.lexists(partial)
        and fs.is_read_only(partial)  # complete: killed between the delete and the rename
    ):
        os.rename(partial, final)
    if os.path.lexists(partial):
        fs.delete(partial)
    if os.path.lexists(final):
        uuid = fs.info(final).uuid
        if known:
            assert isinstance(manifest, dict)
            layer = Layer.from_manifest(manifest, layer_id, uuid)
            if manifest.get("uuid") != uuid and pending["owner"] != NO_OWNER:
                # The new state of a reopened layer whose new record was never written (not
                # one an earlier version folded late writes into, owned by NO_OWNER).
                layer = layer.replace(status=Status.INTERRUPTED)
            if manifest.get("uuid") != uuid:
                store.write_manifest(
                    layer,
                    pending["origin"],
                    pending["deployment"],
                    manifest.get("installed"),
                )
        else:
            status = Status.DRIFT if pending["owner"] == NO_OWNER else Status.INTERRUPTED
            layer = layer_of(store, pending, status, uuid, PackageDelta())
            store.write_manifest(layer, pending["origin"], pending["deployment"], None)
        store.finalize(layer, pending["deployment"], None)
        log.warning("ashlayers: finished layer %d left by an interrupted run", layer_id)
        return layer
    if pending["owner"] == NO_OWNER:  # an unfinished drift layer: the next check redoes it
        store.delete_row(layer_id)
        return None
    delta = PackageDelta()
    installed = None
    before = before_of(target, pending, database) if database is not None else None
    if database is not None and before is not None:
        installed = database.read_installed(target.root)
        delta = PackageDelta.between(before, installed, database.compare_versions)
    layer = make_layer(target, pending, Status.INTERRUPTED, delta, installed)
    log.warning(
        "ashlayers: the run `%s` ended without its post hook; kept as interrupted layer %d",
        pending["command"],
        layer.id,
    )
    return layer


def database_for(target: Target, origin: Origin) -> PackageDatabase | None:
    """The database face of the manager a layer of `origin` comes from, for the target
    root: this process's own when the root is its own, else one that reads chrooted into the
    root, with the root's bindings. None for a layer of no manager (drift, run, replay)."""
    plugin = origin.manager
    face = database_of(plugin)
    if face is None or plugin is None:
        return face
    from ashcore.sets import ChrootedDatabase, in_own_root

    return face if in_own_root(target.root) else ChrootedDatabase(plugin, face)


def running(target: Target, pending: Any) -> bool:
    """Whether a pending transaction is still at work: its manager, or the helper its pre
    hook left to make the layer once the manager is done (ashcore/linger.py)."""
    if is_alive(pending["owner"]):
        return True
    from ashcore.linger import helper_alive

    return helper_alive(target.store.path, pid_of(pending["owner"]))


def require_idle(target: Target) -> None:
    """For commands that change or judge the set of layers (prune, remove, doctor): no
    package operation may be running (its layer may be reopened, half made). One whose owner
    is gone is closed first. Call with the store lock held."""
    pending = target.store.pending()
    if pending is None:
        return
    if running(target, pending):
        pid = str(pid_of(pending["owner"]))
        raise UsageError(
            f"a package operation is running: {pending['command']} (pid {pid})",
            hint="wait for it to finish, then run this again",
        )
    recover(target, pending, database_for(target, pending["origin"]))
