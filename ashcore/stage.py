"""Stages, and every other mount a store makes on the host, named by that store.

A replay or a try mounts a deployment as a root a manager can run in (a *stage*); boot and
setup mount the filesystem's top level for a moment; apply mounts proc, sys, dev, /tmp and
/run in the root it works on. These mounts are the host's, outside any store, so each lives
under a folder named by the store's subvolume uuid, `/run/ashlayers/<uuid>/`: two roots on
one machine (cloned from one base, with the same counters) never share a name. /run is
emptied at every boot, as the mounts are.

Before anything is mounted, a *lease* (`<name>.json` in that folder) names the mounts and
the process that makes them. A kill leaves the lease behind; `ashctl doctor` finds the
leases whose owner is gone, and with --repair stops what still runs in their stages and
unmounts them. A live owner's lease, and other stores' folders, are never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid as uuids
from dataclasses import dataclass

from ashcore.errors import BackendError
from ashcore.log import logger
from ashcore.mounts import (
    api_points,
    mount_api,
    mount_at,
    mount_subvolume,
    mount_toplevel,
    submounts,
    unmount,
    unmount_all,
)
from ashcore.ondisk import read_json, write_json
from ashcore.process import is_alive, owner_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.target import Target

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETTLE_TIMEOUT = 120.0  # seconds for the hooks' helper to describe a replayed layer
LINGER = 15.0  # seconds to wait for the helper, and whatever else runs in the stage, to exit
HOST = "/run/ashlayers"
STAGE = "stage-"  # a stage's folder: stage-<deployment>
TOP = "top-"  # a mount of the filesystem's top level
LEASE = ".json"

log = logger(__name__)


@dataclass(frozen=True)
class Lease:
    """Mounts a process made on the host for a store, and that process ("pid:start")."""

    path: str  # the lease file; a folder of the same name without ".json" is its mount point
    what: str  # "try", "replay", "apply", "top"
    owner: str
    mounts: tuple[str, ...]

    @property
    def folder(self) -> str:
        return self.path[: -len(LEASE)]

    @property
    def is_stage(self) -> bool:
        """Whatever runs chrooted in its mounts is the owner's work (stopped on repair)."""
        return os.path.basename(self.folder).startswith(STAGE)

    def alive(self) -> bool:
        return self.owner[:1].isdigit() and is_alive(self.owner)


def host_dir(target: Target) -> str:
    """The store's own folder on the host: named by the store subvolume's uuid (by the
    root's before `ashctl setup` made the store)."""
    store = target.store.path
    subvolume = store if target.fs.is_subvolume(store) else target.root
    try:
        return os.path.join(HOST, target.fs.info(subvolume).uuid)
    except BackendError:  # a root that is no subvolume (apply to a plain folder)
        st = os.stat(target.root)
        return os.path.join(HOST, f"root-{st.st_dev}-{st.st_ino}")


def host_dirs(target: Target) -> list[str]:
    """The folders this store's mounts may be in: its own, and the root's (setup's)."""
    found = [host_dir(target)]
    with contextlib.suppress(BackendError):
        by_root = os.path.join(HOST, target.fs.info(target.root).uuid)
        if by_root not in found:
            found.append(by_root)
    return found


def _take(folder: str, what: str, mounts: list[str]) -> str:
    """Write the lease of `folder`'s mounts, before any is made; returns its path."""
    path = folder + LEASE
    lease = {"what": what, "owner": owner_of(os.getpid()), "mounts": mounts}
    for attempt in range(3):  # the store's folder goes when its last lease goes: make it again
        os.makedirs(os.path.dirname(folder), mode=0o700, exist_ok=True)
        try:
            write_json(path, lease)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    return path


def _release(folder: str) -> None:
    """The mounts are gone: the folder, then the lease (a folder never outlives its lease)."""
    with contextlib.suppress(FileNotFoundError, OSError):
        os.rmdir(folder)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder + LEASE)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(folder))  # the store's folder, when nothing else is in it


# -- stages ----------------------------------------------------------------------------------


def stage_path(target: Target, deployment: str) -> str:
    """Where the deployment (path or name) is mounted as a stage."""
    return os.path.join(host_dir(target), STAGE + os.path.basename(deployment))


def mount_stage(target: Target, deployment: str, what: str) -> str:
    """Mount the deployment as a root a manager can run in (with proc, sys, dev, /tmp,
    /run and the store); returns the mount point. `what`: "try" or "replay"."""
    import btrfsutil

    root_mount = mount_at(target.root)
    store_mount = mount_at(target.store.path)
    if root_mount is None or store_mount is None:
        raise BackendError(f"{target.root} or its store is not mounted", hint="run doctor")
    mountpoint = stage_path(target, deployment)
    _take(mountpoint, what, [mountpoint])
    os.makedirs(mountpoint, mode=0o700, exist_ok=True)
    mount_subvolume(root_mount.source, "/" + btrfsutil.subvolume_path(deployment), mountpoint)
    inside = os.path.join(mountpoint, target.config.store.lstrip("/"))
    os.makedirs(inside, exist_ok=True)
    mount_subvolume(store_mount.source, store_mount.fs_root, inside)
    mount_api(mountpoint)
    return mountpoint


def unmount_stage(mountpoint: str) -> None:
    """Stop what runs in the stage, unmount it with all below it, remove its folder and
    lease."""
    if os.path.isdir(mountpoint):
        kill_inside(mountpoint)
        unmount_all([mountpoint])
    _release(mountpoint)


def inside(mountpoint: str) -> list[int]:
    """The processes whose root is the stage (chrooted into it)."""
    real = os.path.realpath(mountpoint)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if root == real or root.startswith(real + "/"):
            found.append(int(entry))
    return found


def kill_inside(mountpoint: str, wait: float = 5.0) -> None:
    """SIGKILL what runs in the stage (a daemon a package script left), so that it can be
    unmounted; wait up to `wait` seconds for it to be gone."""
    import time

    deadline = time.monotonic() + wait
    while pids := inside(mountpoint):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


# -- the filesystem's top level, and a root's own API mounts ---------------------------------


def mount_top(folder_of: str, device: str) -> str:
    """Mount the top level of the filesystem on `device` in a new folder under `folder_of`
    (a store's host folder); returns it. `unmount_top` undoes it."""
    folder = os.path.join(folder_of, TOP + uuids.uuid4().hex[:12])
    _take(folder, "top", [folder])
    os.makedirs(folder, mode=0o700)
    try:
        mount_toplevel(device, folder)
    except BackendError:
        _release(folder)
        raise
    return folder


def unmount_top(folder: str) -> None:
    if mount_at(folder) is not None:
        unmount(folder, lazy=True)
    _release(folder)


def mount_root_api(target: Target) -> str:
    """Mount what a manager needs in the target root itself (what is not mounted there yet),
    under a lease in the store's host folder; returns the lease's folder for
    `unmount_root_api`."""
    folder = os.path.join(host_dir(target), f"api-{uuids.uuid4().hex[:12]}")
    missing = [p for p in api_points(target.root) if mount_at(p) is None]
    _take(folder, "apply", missing)
    mount_api(target.root)
    return folder


def unmount_root_api(folder: str) -> None:
    lease = _read(folder + LEASE)
    if lease is not None:
        unmount_all(list(lease.mounts))
    _release(folder)


# -- what a kill left: found by doctor -------------------------------------------------------


def _read(path: str) -> Lease | None:
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    mounts = data.get("mounts")
    return Lease(
        path=path,
        what=str(data.get("what", "?")),
        owner=str(data.get("owner", "")),
        mounts=tuple(m for m in mounts if isinstance(m, str)) if isinstance(mounts, list) else (),
    )


def leftovers(target: Target) -> list[Lease]:
    """The leases in this store's host folders whose owner is gone (a torn one, too: its
    owner was killed while writing it, before it mounted anything)."""
    found = []
    for folder in host_dirs(target):
        if not os.path.isdir(folder):
            continue
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if not entry.endswith(LEASE):
                continue
            lease = _read(path) or Lease(path, "?", "", ())
            if not lease.alive():
                found.append(lease)
    return found


def held(lease: Lease) -> list[str]:
    """The lease's mounts still mounted (each with what is below it)."""
    return [m for m in lease.mounts if mount_at(m) is not None or submounts(m)]


def clear(lease: Lease) -> None:
    """Undo what a killed owner left: stop what runs in its stage, unmount, remove."""
    if lease.is_stage:
        for mountpoint in lease.mounts:
            if os.path.isdir(mountpoint):
                kill_inside(mountpoint)
    unmount_all([m for m in lease.mounts if os.path.isdir(m)])
    _release(lease.folder)


def strays(target: Target) -> list[str]:
    """Folders in this store's host folders that no lease names (left by earlier versions),
    empty and not mounted: removed by `sweep`."""
    found = []
    for folder in host_dirs(target):
        if not os.path.isdir(folder):
            continue
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if (
                os.path.isdir(path)
                and not os.path.lexists(path + LEASE)
                and mount_at(path) is None
                and not submounts(path)
            ):
                found.append(path)
    return found


def sweep(target: Target, repair: bool) -> list[str]:
    """What killed runs of this store left mounted on the host (with repair: cleared, and
    what could not be cleared). Never touches a live owner's mounts or another store's."""
    problems = []
    for lease in leftovers(target):
        mounted = held(lease)
        if repair:
            clear(lease)
            if mounted:
                log.info(
                    "mended: unmounted what a killed %s left: %s", lease.what, ", ".join(mounted)
                )
            if still := held(lease):
                problems.append(f"could not unmount what a killed {lease.what} left: {still}")
        elif mounted:
            problems.append(
                f"a killed {lease.what} left {len(mounted)} mount(s): {', '.join(mounted)}"
                " (--repair stops what runs there and unmounts them)"
            )
        else:
            problems.append(f"a killed {lease.what} left {lease.folder} (--repair removes it)")
    for path in strays(target):
        if repair:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only when empty: a folder of anything else stays
        else:
            problems.append(f"{path} is left over (--repair removes it)")
    return problems


# -- running in a stage ---------------------------------------------------------------------


def chroot_env(name: str | None, **more: str) -> dict[str, str]:
    """The environment of a command run chrooted in a stage or a root: clean, plus the
    layer's name for the hooks inside."""
    return {
        "PATH": CHROOT_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "DEBIAN_FRONTEND": "noninteractive",
        **({"ASH_NAME": name} if name else {}),
        **more,
    }


def wait_described(target: Target, mountpoint: str) -> None:
    """Wait until the replayed operation's layer is described and its helper has exited
    (having recorded when the manager exited: its late writes are its own, not drift), so
    that the next step begins on a settled stage. A daemon a package script left running
    is not waited for beyond LINGER."""
    from ashcore.recovery import require_idle, running

    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        pending = target.store.pending()
        if pending is None:
            break
        if not running(target, pending):
            with target.store.locked(target.config.lock_timeout):
                require_idle(target)  # describes a layer whose helper is gone
            break
        time.sleep(0.05)
    else:
        raise BackendError("a replayed operation's layer was not described in time")
    quiet = time.monotonic() + LINGER
    while inside(mountpoint) and time.monotonic() < quiet:
        time.sleep(0.05)
