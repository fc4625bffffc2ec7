"""Rollback: a new writable snapshot of a layer becomes the deployment.

The state being left is kept first (as drift, if it changed since its layer). On the booted
system the new deployment becomes the default subvolume and takes effect at reboot. On a
root that is not booted (an image, a chroot seen from outside) the new deployment is mounted
in place of the old one at once, with everything mounted below it moved across.
"""

from __future__ import annotations

import logging
import os

from ashcore.caches import drop_caches, renew_caches
from ashcore.deployments import (
    booted_or_refuse,
    deployment_in_store,
    is_booted_root,
    is_try,
    new_deployment_path,
    stage_name,
    swap_mount,
)
from ashcore.drift import keep_drift, sweep_probes
from ashcore.errors import BackendError, UsageError
from ashcore.lifecycle import require_idle
from ashcore.model import Layer, Status
from ashcore.mounts import mount_at, mounts
from ashcore.ondisk import read_json, write_json
from ashcore.target import Target

log = logging.getLogger(__name__)


def default_target(target: Target) -> Layer:
    head, _ = target.store.head(target.deployment().uuid)
    if head is None:
        raise UsageError("the deployment has no layer yet", hint="see `ashctl list`")
    layer = target.store.get(head)
    if layer.parent is None:
        raise UsageError(f"layer {head} has no parent to roll back to", hint="name a layer")
    return target.store.get(layer.parent)


# -- the journal: a rollback that was cut short is finished or undone by the next run --------

JOURNAL = "rollback.json"


def _journal(target: Target) -> str:
    return os.path.join(target.store.path, JOURNAL)


def _begin_journal(
    target: Target, path: str, layer: Layer, old: str, booted: bool, *, made: bool = True
) -> None:
    retired = deployment_in_store(target) if not booted else None
    write_json(
        _journal(target),
        {
            "deployment": os.path.basename(path),
            "layer": layer.id,
            "from": old,
            "booted": booted,
            "retired": os.path.basename(retired) if retired else None,
            "made": made,  # False: a deployment that was there before (a try's): never deleted
        },
    )


def interrupted(target: Target) -> dict[str, object] | None:
    """The journal of a rollback that was cut short, or None."""
    found = read_json(_journal(target))
    if found is None and os.path.lexists(_journal(target)):
        return {}  # torn: written before anything it names was made
    return found if isinstance(found, dict) else None


def resume(target: Target) -> str | None:
    """Finish or undo a rollback that was cut short; say which (None: there was none).
    Call under the store lock, after `finish_swap`.

    The switch is the commit point: the root mounts the new deployment (or, on the booted
    system, it is the default subvolume). Then what remained is done: the old deployment is
    forgotten and, if this store made it, deleted. Before it the new deployment was never
    used: it is deleted and nothing else changed."""
    journal = interrupted(target)
    if journal is None:
        return None
    store, fs = target.store, target.fs
    name = journal.get("deployment")
    path = os.path.join(store.deployments_dir, name) if isinstance(name, str) else None
    layer = journal.get("layer")
    said: str
    if path is None or not fs.is_subvolume(path):
        said = f"an interrupted rollback to layer {layer} made nothing: cleared"
    else:
        new = fs.info(path)
        if journal.get("booted"):
            committed = fs.default_id(target.root) == new.id
        else:
            committed = target.deployment().uuid == new.uuid
        if committed:
            after_switch(target, journal)
            said = f"finished the interrupted rollback to layer {layer}"
        elif journal.get("made", True):
            drop_caches(fs, path)
            fs.delete(path)
            store.forget_deployment(new.uuid)
            said = f"undid the interrupted rollback to layer {layer}: nothing changed"
        else:
            said = f"undid the interrupted deploy of layer {layer}: nothing changed"
        if not committed:
            from ashcore.boot import refresh_quietly

            refresh_quietly(target)
    os.unlink(_journal(target))
    return said


def after_switch(target: Target, journal: dict[str, object]) -> None:
    """Once the root switched (or the default did): the deployment left is forgotten (when
    it is no longer mounted) and the one the journal retires, made by this store, deleted."""
    store = target.store
    if not journal.get("booted") and isinstance(journal.get("from"), str):
        store.forget_deployment(str(journal["from"]))
    retired = journal.get("retired")
    if isinstance(retired, str):
        _delete_retired(target, os.path.join(store.deployments_dir, retired))
    from ashcore.boot import load, refresh_quietly, switched

    name = journal.get("deployment")
    if isinstance(name, str) and load(target) is not None:
        switched(target, os.path.join(store.deployments_dir, name))
    refresh_quietly(target)  # the boot menu names the deployment the switch made


def _delete_retired(target: Target, retired: str) -> None:
    if not target.fs.is_subvolume(retired):
        return
    try:
        drop_caches(target.fs, retired)
        target.fs.delete(retired)
    except BackendError as e:  # in use, or holds a nested subvolume: leave it
        log.warning("kept the previous deployment %s: %s", retired, e)


def rollback(target: Target, layer: Layer) -> tuple[str, bool]:
    """Make `layer` the deployment. Returns (new deployment path, takes effect at reboot)."""
    booted = booted_or_refuse(target, "rollback")
    if layer.status == Status.PRUNED:
        raise UsageError(
            f"layer {layer.id} ({layer.name}) was pruned: its snapshot is gone, only its record"
            " stays",
            hint="see `ashctl list` for layers with snapshots",
        )
    if not os.path.isdir(target.store.layer_path(layer.id)):
        raise UsageError(
            f"the snapshot of layer {layer.id} ({layer.name}) is gone: nothing to roll back to",
            hint="see `ashctl list`; `ashctl doctor` tells what is missing",
        )
    return _switch_to(target, layer, None, booted), booted


def deploy_existing(target: Target, path: str, layer: Layer) -> bool:
    """Make the deployment at `path` (a try's, whose layer is `layer`) the deployment: at once
    on a root that is not booted, at the next boot on the running system. Returns whether it
    waits for a reboot. A deployment that was there before is never deleted by an undo."""
    booted = booted_or_refuse(target, "deploy")
    _switch_to(target, layer, path, booted)
    return booted


def _switch_to(target: Target, layer: Layer, existing: str | None, booted: bool) -> str:
    """Switch to `existing`, or to a new writable snapshot of `layer`; returns its path.

    All under the store lock: no package operation begins against a root being swapped.
    The state left is kept first, byte for byte. A journal names the deployment before it
    is made or switched to, so that a kill at any point is finished or undone by the next
    run (`resume`)."""
    store, fs = target.store, target.fs
    with store.locked(target.config.lock_timeout):
        require_idle(target)
        if (said := resume(target)) is not None:
            log.info("%s", said)
        dep = target.deployment()
        keep_drift(target, dep, strict=True)
        sweep_probes(target)
        path = existing or new_deployment_path(target, layer)
        _begin_journal(target, path, layer, dep.uuid, booted, made=existing is None)
        if existing is None:
            fs.snapshot(store.layer_path(layer.id), path, read_only=False)
            renew_caches(fs, target.root, path)
            store.set_head(fs.info(path).uuid, layer.id, None)
        from ashcore.data import carry_fstab

        carry_fstab(target, path)  # its boots mount the same users' data
        if booted:
            fs.set_default(path)
        else:
            swap_mount(target.root, path)  # the lock's file moves with the store's mount
        resume(target)
    return path


def pending_reboot(target: Target) -> bool:
    """A rollback of the running system waits for a reboot: the default subvolume is a
    deployment this store made, and not the one running. (Systems that mount `subvol=@`
    leave the default at the top level: that is no pending rollback.)"""
    try:
        if not is_booted_root(target.root):
            return False
    except UsageError:
        return False
    try:
        default = target.fs.default_id(target.root)
        if default == target.deployment().id:
            return False
        store = mount_at(target.store.path)
        prefix = (store.fs_root.rstrip("/") if store else "/@ash") + "/deployments/"
        return ("/" + target.fs.path_of(target.root, default)).startswith(prefix)
    except BackendError:
        return False


def next_boot(target: Target) -> int | None:
    """The layer of the deployment the next boot starts, when a rollback or deploy waits for
    a reboot (else None)."""
    if not pending_reboot(target):
        return None
    try:
        default = target.fs.default_id(target.root)
        for entry in os.listdir(target.store.deployments_dir):
            path = os.path.join(target.store.deployments_dir, entry)
            if target.fs.is_subvolume(path) and target.fs.info(path).id == default:
                return target.store.head(target.fs.info(path).uuid)[0]
    except (BackendError, OSError):
        return None
    return None


def mounted_deployments(target: Target) -> set[str]:
    """The names of this store's deployments mounted anywhere (the root, a stage)."""
    store_mount = mount_at(target.store.path)
    if store_mount is None:
        return set()
    prefix = store_mount.fs_root.rstrip("/") + "/deployments/"
    return {
        m.fs_root[len(prefix) :].split("/")[0]
        for m in mounts()
        if m.source == store_mount.source and m.fs_root.startswith(prefix)
    }


def unused_deployments(target: Target) -> list[str]:
    """Deployments this store made that nothing uses: not mounted, not the default subvolume,
    not named by an unfinished rollback's journal (paths)."""
    base = target.store.deployments_dir
    if not os.path.isdir(base) or mount_at(target.store.path) is None:
        return []
    mounted = mounted_deployments(target)
    from ashcore.boot import menu_deployments

    kept_for_boot = menu_deployments(target)
    journal = interrupted(target) or {}
    try:
        default = target.fs.default_id(target.root)
    except BackendError:
        default = None
    unused = []
    for entry in sorted(os.listdir(base)):
        path = os.path.join(base, entry)
        if entry in mounted or entry in (journal.get("deployment"), stage_name(target)):
            continue
        if not target.fs.is_subvolume(path) or target.fs.info(path).id == default:
            continue
        if is_try(entry):  # made to be deployed: `ashctl remove` of its layer removes it
            continue
        if entry in kept_for_boot:  # the boot menu's way back
            continue
        unused.append(path)
    return unused


def unchanged_since_made(target: Target, path: str) -> bool:
    """True when nothing in the deployment at `path` changed since its snapshot was taken
    (the cache folders a rollback puts in it aside): deleting it loses nothing its layer lacks."""
    from ashcore.caches import kept_out

    info = target.fs.info(path)
    changed = target.fs.changed_since(path, info.otransid, 0.0)
    if changed is None:
        return False
    made = {""}
    for rel in kept_out():
        parts = rel.split("/")
        made |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
    return changed <= made


def forget_unused(target: Target, path: str) -> None:
    """Delete a deployment nothing uses, and its record (call under the store lock)."""
    uuid = target.fs.info(path).uuid
    drop_caches(target.fs, path)
    target.fs.delete(path)
    target.store.forget_deployment(uuid)
