"""Deployments: where new ones are made, which one a root is, and the switch of mounts.

What rollback, deploy, try and replay share, below all of them: a deployment's new path,
try deployments' names, whether a root is the booted system, and the switch that mounts a
new deployment in place of a root that is not booted (with its journal's recovery).
"""

from __future__ import annotations

import os

from ashcore.errors import BackendError, UsageError
from ashcore.model import Layer
from ashcore.mounts import mount_at, mount_subvolume, move_mount, submounts, unmount
from ashcore.ondisk import read_json
from ashcore.target import Target

REPLAY_JOURNAL = "replay.json"  # a replay's journal in the store (ashcore/replay.py)


TRY = "-try-"  # in the names of try deployments: made to be deployed, not leftovers


def is_try(name: str) -> bool:
    return TRY in name


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


def new_deployment_path(target: Target, layer: Layer, kind: str = "-") -> str:
    """deployments/<n><kind>layer<id>, n one more than any there (kind "-try-": a try's)."""
    base = target.store.deployments_dir
    os.makedirs(base, mode=0o700, exist_ok=True)
    n = 1 + max(
        (int(d.split("-")[0]) for d in os.listdir(base) if d.split("-")[0].isdigit()), default=0
    )
    return os.path.join(base, f"{n}{kind}layer{layer.id}")


def staging_path(root: str) -> str:
    """Where a rollback mounts the new deployment before it takes the root's place: a fixed
    sibling of the root, so that the next run finds a switch that was cut short."""
    real = os.path.realpath(root).rstrip("/")
    return os.path.join(os.path.dirname(real), ".ash-swap-" + os.path.basename(real))


def swap_mount(root: str, new_path: str) -> None:
    """Mount `new_path` at `root` in place of what is there, moving the submounts across.
    Each step leaves a state `finish_swap` recognises and completes."""
    import btrfsutil

    real = os.path.realpath(root).rstrip("/")
    current = mount_at(real)
    if current is None:
        raise BackendError(f"{root} is not a mount point", hint="mount the root's subvolume there")
    staging = staging_path(real)
    os.makedirs(staging, mode=0o700, exist_ok=True)
    mount_subvolume(current.source, "/" + btrfsutil.subvolume_path(new_path), staging)
    finish_swap(real)


def finish_swap(root: str) -> bool:
    """Complete a switch of `root` that was cut short (a kill, a power loss); False when none
    was under way. Idempotent: each step checks what is already done.

    Once the new deployment is mounted at the staging folder the switch goes forward: the
    mounts still below the root move across (outermost first), the old root is unmounted, the
    staging mount moves to the root. Before that nothing was changed, and only the empty
    staging folder is removed."""
    real = os.path.realpath(root).rstrip("/")
    staging = staging_path(real)
    if not os.path.lexists(staging):
        return False
    if mount_at(staging) is not None:
        if mount_at(real) is not None:
            below = submounts(real)
            outermost = [
                m for m in below if not any(m.target.startswith(o.target + "/") for o in below)
            ]
            for m in outermost:
                inside = os.path.join(staging, os.path.relpath(m.target, real))
                os.makedirs(inside, exist_ok=True)
                move_mount(m.target, inside)
            try:
                unmount(real)
            except BackendError:
                unmount(real, lazy=True)
        move_mount(staging, real)
    os.rmdir(staging)
    return True


def booted_or_refuse(target: Target, command: str) -> bool:
    """Whether the root is the running system (a switch then waits for a reboot); UsageError
    for a root that is neither booted nor seen from outside (the chroot this runs in)."""
    booted = is_booted_root(target.root)
    if not booted and os.path.realpath(target.root) == "/":
        raise UsageError(
            "cannot switch the root this command runs in",
            hint=f"run `ashctl --root PATH {command}` from outside the chroot",
        )
    return booted


def deployment_in_store(target: Target) -> str | None:
    """The path of the deployment mounted at the root when a rollback of this store made it
    (under its deployments/ folder), else None: a root the user made is never deleted."""
    root, store = mount_at(target.root), mount_at(target.store.path)
    if root is None or store is None or root.source != store.source:
        return None
    prefix = store.fs_root.rstrip("/") + "/deployments/"
    if not root.fs_root.startswith(prefix):
        return None
    return os.path.join(target.store.deployments_dir, root.fs_root[len(prefix) :])


def stage_name(target: Target) -> str | None:
    """The deployment a replay (running or cut short) is building, by its folder name."""
    journal = read_json(os.path.join(target.store.path, REPLAY_JOURNAL))
    name = journal.get("deployment") if isinstance(journal, dict) else None
    return name if isinstance(name, str) else None
