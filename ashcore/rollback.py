"""Rollback: a new writable snapshot of a layer becomes the deployment.

The state being left is kept first (as drift, if it changed since its layer). On the booted
system the new deployment becomes the default subvolume and takes effect at reboot. On a
root that is not booted (an image, a chroot seen from outside) the new deployment is mounted
in place of the old one at once, with everything mounted below it moved across.
"""

from __future__ import annotations

import logging
import os
import tempfile

from ashcore.caches import drop_caches, renew_caches
from ashcore.errors import BackendError, UsageError
from ashcore.lifecycle import Target, capture_drift, require_idle, sweep_probes
from ashcore.model import Layer
from ashcore.mounts import mount_at, mount_subvolume, move_mount, submounts, unmount

log = logging.getLogger(__name__)


def is_booted_root(root: str) -> bool:
    """True when `root` is the root of the running system (not a chroot, not an image).
    Fails closed: for this process's own `/`, when that cannot be proven (/proc/1/root
    unreadable, as in some chroots and containers), a UsageError: a rollback must not take
    a chroot for the booted system. Another folder is an image or a chroot seen from outside."""
    try:
        return os.path.samestat(os.stat(root), os.stat("/proc/1/root"))
    except OSError as e:
        if os.path.realpath(root) != "/":
            return False
        raise UsageError(
            f"cannot tell whether {root} is the running system: /proc/1/root: {e.strerror}",
            hint="run ashctl from the host, as root, with --root PATH for a chroot",
        ) from e


def default_target(target: Target) -> Layer:
    head, _ = target.store.head(target.deployment().uuid)
    if head is None:
        raise UsageError("the deployment has no layer yet", hint="see `ashctl list`")
    layer = target.store.get(head)
    if layer.parent is None:
        raise UsageError(f"layer {head} has no parent to roll back to", hint="name a layer")
    return target.store.get(layer.parent)


def _new_deployment_path(target: Target, layer: Layer) -> str:
    base = target.store.deployments_dir
    os.makedirs(base, mode=0o700, exist_ok=True)
    n = 1 + max(
        (int(d.split("-")[0]) for d in os.listdir(base) if d.split("-")[0].isdigit()), default=0
    )
    return os.path.join(base, f"{n}-layer{layer.id}")


def _swap_mount(root: str, new_path: str) -> None:
    """Mount `new_path` at `root` in place of what is there, moving the submounts across."""
    import btrfsutil

    real = os.path.realpath(root).rstrip("/")
    current = mount_at(real)
    if current is None:
        raise BackendError(f"{root} is not a mount point", hint="mount the root's subvolume there")
    below = submounts(real)
    outermost = [m for m in below if not any(m.target.startswith(o.target + "/") for o in below)]
    staging = tempfile.mkdtemp(prefix=".ash-swap-", dir=os.path.dirname(real))
    try:
        mount_subvolume(current.source, "/" + btrfsutil.subvolume_path(new_path), staging)
        for m in outermost:
            inside = os.path.join(staging, os.path.relpath(m.target, real))
            os.makedirs(inside, exist_ok=True)
            move_mount(m.target, inside)
        try:
            unmount(real)
        except BackendError:
            unmount(real, lazy=True)
        move_mount(staging, real)
    finally:
        if not os.path.ismount(staging):
            os.rmdir(staging)


def rollback(target: Target, layer: Layer) -> tuple[str, bool]:
    """Make `layer` the deployment. Returns (new deployment path, takes effect at reboot).

    All under the store lock: no package operation begins against a root being swapped.
    """
    store, fs = target.store, target.fs
    booted = is_booted_root(target.root)
    if not booted and os.path.realpath(target.root) == "/":
        raise UsageError(
            "cannot switch the root this command runs in",
            hint="run `ashctl --root PATH rollback` from outside the chroot",
        )
    if not os.path.isdir(store.layer_path(layer.id)):
        raise UsageError(
            f"the snapshot of layer {layer.id} ({layer.name}) is gone: nothing to roll back to",
            hint="see `ashctl list`; `ashctl doctor` tells what is missing",
        )
    with store.locked(target.config.lock_timeout):
        require_idle(target)
        dep = target.deployment()
        capture_drift(target, dep, strict=True)  # the state left is kept, byte for byte
        sweep_probes(target)
        path = _new_deployment_path(target, layer)
        fs.snapshot(store.layer_path(layer.id), path, read_only=False)
        renew_caches(fs, target.root, path)
        store.set_head(fs.info(path).uuid, layer.id, None)
        if booted:
            fs.set_default(path)
            return path, True
        retired = _deployment_in_store(target)
        _swap_mount(target.root, path)  # the lock's file moves with the store's mount
        store.forget_deployment(dep.uuid)  # no longer mounted: its layers are not its base
        if retired is not None:  # one this store made: its state is a layer, it can go
            try:
                drop_caches(fs, retired)
                fs.delete(retired)
            except BackendError as e:  # in use, or holds a nested subvolume: leave it
                log.warning("kept the previous deployment %s: %s", retired, e)
    return path, False


def _deployment_in_store(target: Target) -> str | None:
    """The path of the deployment mounted at the root when a rollback of this store made it
    (under its deployments/ folder), else None: a root the user made is never deleted."""
    root, store = mount_at(target.root), mount_at(target.store.path)
    if root is None or store is None or root.source != store.source:
        return None
    prefix = store.fs_root.rstrip("/") + "/deployments/"
    if not root.fs_root.startswith(prefix):
        return None
    return os.path.join(target.store.deployments_dir, root.fs_root[len(prefix) :])


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
