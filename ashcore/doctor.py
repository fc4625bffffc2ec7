"""`ashctl doctor`: find (and with --repair mend) what a crash or a hand can leave behind.

Consistent means: no pending transaction whose owner is gone, every record has its
snapshot (a pruned one has none), every snapshot has its record, no partial snapshot or probe
is left over, no rollback cut short, no deployment nothing uses.
The database can be rebuilt from the manifests beside the snapshots.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3

from ashcore.model import Layer, Origin, Status
from ashcore.ondisk import read_json
from ashcore.recovery import require_idle, running
from ashcore.store import now_iso
from ashcore.target import Target

log = logging.getLogger(__name__)

_LAYER = re.compile(r"^(\d+)$")
_PARTIAL = re.compile(r"^(\d+)\.partial$")
_EARLY = re.compile(r"^probe\.(\d+)$")  # a hook's early probe (ashcore/probe.py)


def check(target: Target, repair: bool) -> list[str]:
    """The problems found (after repair: those left). Closes stale transactions either way."""
    store, fs = target.store, target.fs
    problems: list[str] = []
    db_ok = True
    try:
        store.db.execute("SELECT count(*) FROM layers").fetchone()
    except Exception as e:  # an unreadable database
        db_ok = False
        problems.append(f"database unreadable: {e}")
        cause = e.__cause__
        corrupt = isinstance(cause, sqlite3.DatabaseError) and not isinstance(
            cause,
            sqlite3.OperationalError,  # a full disk, a lock: the file itself is sound
        )
        if repair and not corrupt:
            problems.append("not moved aside: the database file is sound; mend the cause first")
        if repair and corrupt:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                path = os.path.join(store.path, "ash.db" + suffix)
                if os.path.exists(path):
                    os.replace(path, path + ".broken")
            db_ok = True
    if not db_ok:
        return problems
    if repair and problems:  # moved aside: the manifests rebuild it below
        log.info(
            "mended: %s (moved aside as ash.db.broken; rebuilt from the manifests)", problems.pop()
        )
    from ashcore.setup import missing_btrfs_progs

    if (missing := missing_btrfs_progs(target.root)) is not None:
        problems.append(f"{missing}: install it")
    with store.locked(target.config.lock_timeout):
        from ashcore.stage import sweep

        # First what killed tries and replays left mounted: what still runs in their stages
        # (a manager whose ashctl was killed) is stopped, so that its transaction closes.
        problems += sweep(target, repair)
        if repair:
            require_idle(target)  # closes a transaction whose owner is gone
        elif (pending := store.pending()) is not None and not running(target, pending):
            problems.append(
                f"an operation whose process is gone was not closed: {pending['command']}"
                " (--repair keeps what it changed as an interrupted layer)"
            )
        problems += _rollbacks(target, repair)
        problems += _tries(target, repair)
        from ashcore.fleet.arrival import recover as recover_pulls

        problems += [p for p in recover_pulls(target, repair) if not repair]
        problems += _data_places(target, repair)
        records = {layer.id: layer for layer in store.layers()}
        on_disk: dict[int, str] = {}
        for entry in sorted(os.listdir(store.layers_dir)):
            path = os.path.join(store.layers_dir, entry)
            # What a killed run leaves while it holds the lock is removed as the next run would.
            if (
                (_PARTIAL.match(entry) and store.pending() is None)
                or entry == "probe"
                or ((m := _EARLY.match(entry)) and not os.path.exists(f"/proc/{m.group(1)}"))
            ):
                if not repair:
                    # An early probe of a hook gone is swept by the next operation as a rule:
                    # no fault of the store. A partial snapshot or a begin's probe is one.
                    if not _EARLY.match(entry):
                        problems.append(f"{entry}: left by a killed run (--repair deletes it)")
                    continue
                log.info("removed %s left by a killed run", entry)
                fs.delete(path)
            elif (m := _LAYER.match(entry)) and fs.is_subvolume(path):
                on_disk[int(m.group(1))] = path
        for layer_id, path in on_disk.items():
            if layer_id in records:
                continue
            problems.append(f"snapshot {layer_id} has no record")
            if repair:
                manifest = read_json(store.manifest_path(layer_id))
                uuid = fs.info(path).uuid
                if isinstance(manifest, dict) and manifest.get("uuid") == uuid:
                    store.insert_layer(
                        Layer.from_manifest(manifest, layer_id, uuid),
                        origin=Origin.from_text(manifest.get("plugin"))
                        if isinstance(manifest.get("plugin"), str)
                        else None,
                    )
                    from ashcore.labels import restore_labels

                    restore_labels(target, layer_id, manifest)
                    deployment = manifest.get("deployment")
                    if isinstance(deployment, str):
                        head, _ = store.head(deployment)
                        if head is None or head < layer_id:
                            store.set_head(deployment, layer_id, None)
                else:  # never delete a snapshot: keep it, as what it is known to be
                    recovered = Layer(
                        id=layer_id,
                        name=f"recovered snapshot {layer_id}",
                        parent=None,
                        manager=None,
                        command="",
                        status=Status.INTERRUPTED,
                        created=now_iso(),
                        uuid=uuid,
                    )
                    store.insert_layer(recovered)
                    store.write_manifest(recovered, None, None, None)
                problems.pop()
        for layer_id, record in records.items():
            if record.status == Status.PRUNED:
                if layer_id in on_disk and not repair:
                    problems.append(f"pruned layer {layer_id} still has its snapshot")
                elif layer_id in on_disk:  # a prune killed between its record and the delete
                    log.info(
                        "deleted the snapshot of pruned layer %d (its prune was cut short)",
                        layer_id,
                    )
                    fs.delete(on_disk[layer_id])
                continue
            if layer_id not in on_disk:
                problems.append(f"record {layer_id} has no snapshot")
                if repair:  # kept as history, as prune keeps it
                    store.mark_pruned(layer_id)
                    problems.pop()
                    log.info("mended: layer %d has no snapshot: kept as a pruned record", layer_id)
                continue
            problems += _sets(target, layer_id, repair)
    return problems


def _sets(target: Target, layer_id: int, repair: bool) -> list[str]:
    """A record of an older version whose sets may hold a failed read saved as empty: said;
    on repair, read again with the root's own bindings and corrected (ashcore/sets.py)."""
    from ashcore.sets import read_again, suspect

    plugins = suspect(target, layer_id)
    if not plugins:
        return []
    if not repair:
        return [
            f"layer {layer_id} records no {' or '.join(plugins)} package though its database is"
            " in the snapshot, as an older ashctl recorded a read that failed (--repair reads"
            " it again with the root's own bindings)"
        ]
    for plugin, size in read_again(target, layer_id).items():
        said = f"{size} packages" if size is not None else "unknown: it cannot be read"
        log.info(
            "mended: layer %d: its %s set read again with the root's own: %s",
            layer_id,
            plugin,
            said,
        )
    return []


def _data_places(target: Target, repair: bool) -> list[str]:
    """A data subvolume nothing mounts (a root mounted again by hand): what is written at
    its place would go into the next layer, and a rollback would take it back."""
    from ashcore.data import mount_missing, places

    found = places(target)
    # A place that appeared after setup (a database server installed since): setup moves it.
    # Said, not a fault of the store: until then it is in the layers, as before setup.
    for place in found:
        if place.state == "in layers":
            log.warning("%s", place.describe())
    problems: list[str] = []
    missing = [p for p in found if p.state == "not mounted"]
    if missing and repair:
        for path in mount_missing(target):
            log.info("mended: mounted the users' data subvolume at %s", path)
        return problems
    return problems + [p.describe() for p in missing]


def _rollbacks(target: Target, repair: bool) -> list[str]:
    """A rollback cut short, and deployments nothing uses (what killed rollbacks of earlier
    versions left). An unused deployment is deleted only when proven unchanged since made."""
    from ashcore.deployments import stage_name
    from ashcore.replay import resume as resume_replay
    from ashcore.rollback import (
        forget_unused,
        interrupted,
        resume,
        unchanged_since_made,
        unused_deployments,
    )

    problems = []
    if stage_name(target) is not None:
        if repair:
            log.info("mended: %s", resume_replay(target))
        else:
            problems.append("a replay was cut short (--repair undoes it)")
    journal = interrupted(target)
    if journal is not None:
        if repair:
            log.info("mended: %s", resume(target))
        else:
            problems.append(
                f"a rollback to layer {journal.get('layer')} was cut short (--repair finishes"
                " or undoes it)"
            )
    for path in unused_deployments(target):
        name = os.path.basename(path)
        if not unchanged_since_made(target, path):
            problems.append(
                f"deployment {name} is unused but changed since it was made: kept"
                f" (look at {path}; delete it with `btrfs subvolume delete` when not needed)"
            )
        elif repair:
            forget_unused(target, path)
            log.info("mended: deleted unused deployment %s (unchanged since made)", name)
        else:
            problems.append(f"deployment {name} is unused and unchanged (--repair deletes it)")
    return problems


def _tries(target: Target, repair: bool) -> list[str]:
    """A try cut short before anything was made in it (no layer of its own, not mounted,
    unchanged since made): deleted on repair. A try with a layer waits to be deployed or
    removed: not a problem (`notes` says so)."""
    from ashcore.rollback import mounted_deployments, unchanged_since_made
    from ashcore.trial import discard, tries

    problems = []
    mounted = mounted_deployments(target)
    for name, layer in tries(target):
        path = os.path.join(target.store.deployments_dir, name)
        if layer is not None or name in mounted:
            continue
        if not unchanged_since_made(target, path):
            problems.append(
                f"try {name} was cut short and changed since made: kept (look at {path};"
                " delete it with `btrfs subvolume delete` when not needed)"
            )
        elif repair:
            discard(target, path)
            log.info("mended: deleted try %s, cut short before anything was made in it", name)
        else:
            problems.append(f"try {name} was cut short, nothing made in it (--repair deletes it)")
    return problems


def notes(target: Target) -> list[str]:
    """What is not a problem but waits for the user: tries not deployed."""
    from ashcore.trial import tries

    return [
        f"try {name} waits with layer {layer}: `ashctl deploy {layer}` makes it the"
        f" deployment, `ashctl remove {layer}` drops it"
        for name, layer in tries(target)
        if layer is not None
    ]
