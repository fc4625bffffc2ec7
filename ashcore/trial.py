"""`ashctl try`: work in a new deployment without touching the running root; `deploy` it.

`ashctl try [--name N] -- CMD` makes a writable snapshot of the deployment's layer (drift
kept first, as always), mounts it apart with proc, sys, dev, /tmp, /run and the store (as
replay does), and runs CMD chrooted in it, with the terminal: usually a plain `apt install`,
`dnf install` or `pacman -S`, whose hooks record the layers in the same store as always.
Without CMD it opens a shell there. The running root is not touched.

The snapshot stays as a *try* deployment (`deployments/<n>-try-layer<id>`) whose layer is
the last one made in it. `ashctl deploy LAYER` makes it the deployment: at once on a root
that is not booted, at the next boot on the running system (as rollback, journaled the
same way). `ashctl remove LAYER` of a try's layer that is not deployed removes the try with
it. A try in which nothing changed is deleted at once.
"""

from __future__ import annotations

import os
import subprocess

from ashcore.deployments import TRY, is_try
from ashcore.drift import keep_drift, sweep_probes
from ashcore.errors import BackendError, UsageError
from ashcore.lifecycle import require_idle
from ashcore.log import logger
from ashcore.model import Layer
from ashcore.target import Target

log = logger(__name__)


def trial(target: Target, argv: list[str], name: str | None) -> tuple[str, int | None, int]:
    """Run `argv` (a shell when empty) in a new try deployment. Returns (its path, the layer
    it ends on or None when nothing changed, the command's exit code)."""
    from ashcore.caches import renew_caches
    from ashcore.data import mount_places
    from ashcore.deployments import new_deployment_path
    from ashcore.sizes import require_free
    from ashcore.stage import chroot_env, mount_stage, stage_path, unmount_stage, wait_described

    store, fs = target.store, target.fs
    require_free(target.root, "a try")
    with store.locked(target.config.lock_timeout):
        require_idle(target)
        dep = target.deployment()
        head = keep_drift(target, dep)
        sweep_probes(target)
        if head is None:
            raise UsageError("the deployment has no layer yet", hint="run `ashctl setup`")
        base = store.get(head)
        path = new_deployment_path(target, base, kind=TRY)
        fs.snapshot(store.layer_path(base.id), path, read_only=False)
        renew_caches(fs, target.root, path, carry=True)
        uuid = fs.info(path).uuid
        store.set_head(uuid, base.id, None)
    mountpoint = stage_path(target, path)
    code = 0
    try:
        mount_stage(target, path, "try")
        mount_places(target, mountpoint)  # the same users' data as the root, never a copy
        env = chroot_env(
            name, LANG=os.environ.get("LANG", "C.UTF-8"), TERM=os.environ.get("TERM", "dumb")
        )
        del env["DEBIAN_FRONTEND"]  # the user's terminal: the managers may ask
        shell = "/bin/bash" if os.path.exists(os.path.join(mountpoint, "bin/bash")) else "/bin/sh"
        command = argv or [shell, "-l"]
        code = subprocess.call(["chroot", mountpoint, *command], env=env)
        wait_described(target, mountpoint)
    finally:
        unmount_stage(mountpoint)
    after, _ = store.head(uuid)
    if after == base.id:  # nothing was made in it: nothing to deploy
        with store.locked(target.config.lock_timeout):
            from ashcore.caches import drop_caches

            drop_caches(fs, path)
            fs.delete(path)
            store.forget_deployment(uuid)
        return path, None, code
    return path, after, code


def try_of(target: Target, layer: Layer) -> str | None:
    """The try deployment whose layer is `layer`, or None."""
    base = target.store.deployments_dir
    if not os.path.isdir(base):
        return None
    for entry in sorted(os.listdir(base)):
        path = os.path.join(base, entry)
        if not is_try(entry) or not target.fs.is_subvolume(path):
            continue
        head, _ = target.store.head(target.fs.info(path).uuid)
        if head == layer.id:
            return path
    return None


def deploy(target: Target, layer: Layer) -> tuple[str, bool]:
    """Make `layer` the deployment: its try deployment when it has one (no copy), else a new
    one, as rollback makes. Returns (the deployment's path, whether it waits for a reboot)."""
    from ashcore.rollback import deploy_existing, rollback

    path = try_of(target, layer)
    if path is None:
        return rollback(target, layer)
    if target.fs.info(path).uuid == target.deployment().uuid:
        raise UsageError(f"layer {layer.id} is deployed already", hint="see `ashctl status`")
    return path, deploy_existing(target, path, layer)


def discard(target: Target, path: str) -> None:
    """Delete a try deployment that is not deployed (call under the store lock)."""
    from ashcore.caches import drop_caches

    uuid = target.fs.info(path).uuid
    if uuid == target.deployment().uuid:
        raise UsageError("that try is the deployment now", hint="roll back first")
    drop_caches(target.fs, path)
    target.fs.delete(path)
    target.store.forget_deployment(uuid)


def made_from(name: str) -> int | None:
    """The layer a try deployment (`<n>-try-layer<id>`) was made from."""
    tail = name.rpartition(TRY + "layer")[2]
    return int(tail) if is_try(name) and tail.isdigit() else None


def tries(target: Target) -> list[tuple[str, int | None]]:
    """The try deployments not deployed (not the root, not the next boot's), oldest first:
    (name, the layer it ends on; None when nothing was made in it: a try cut short, or
    running now)."""
    base = target.store.deployments_dir
    if not os.path.isdir(base):
        return []
    current = target.deployment().uuid
    try:
        default = target.fs.default_id(target.root)  # a try deployed for the next boot
    except BackendError:
        default = None
    found = []
    for entry in sorted(os.listdir(base), key=lambda e: (len(e.split("-")[0]), e)):
        path = os.path.join(base, entry)
        if not is_try(entry) or not target.fs.is_subvolume(path):
            continue
        info = target.fs.info(path)
        if info.uuid == current or info.id == default:
            continue
        head, _ = target.store.head(info.uuid)
        found.append((entry, None if head is None or head == made_from(entry) else head))
    return found
