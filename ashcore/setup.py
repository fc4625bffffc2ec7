"""`ashctl setup`: create the store beside the root's subvolume, mount it, install the hooks.

The store is a subvolume created as a sibling of the root's subvolume on the same btrfs
filesystem (for a root at `/@` it is `/@ash`), mounted at <root>/.ash and named in the
root's fstab, so that every deployment (each is a snapshot of a layer) finds it.
"""

from __future__ import annotations

import logging
import os
import posixpath
from importlib import resources

from ashcore.caches import ensure_caches
from ashcore.config import CONFIG_PATH, HOOKS_DIR
from ashcore.errors import BackendError
from ashcore.lifecycle import Operation, begin, commit
from ashcore.model import Origin
from ashcore.mounts import filesystem_uuid, mount_at, mount_subvolume
from ashcore.ondisk import read_bytes, write_atomic
from ashcore.process import owner_of
from ashcore.stage import host_dir, mount_top, unmount_top
from ashcore.target import Target

log = logging.getLogger(__name__)

STORE_SUBVOLUME = "@ash"
COMMIT_HELPER = "usr/libexec/ashlayers/ash-commit"  # the post hooks' fast path (linger.py)
TOP_LEVEL_ID = 5

DEFAULT_CONFIG = """\
# ashlayers configuration. Every setting is shown with its default, but [retention].
# store = "/.ash"              # where the store subvolume is mounted, inside this root
# on_error = "abort"           # "abort": stop a package operation whose layer cannot be made
#                              # "warn": go on without a layer
# lock_timeout = 600           # seconds to wait for another package operation
# noise = []                   # more paths whose changes are not drift (dirs cover below)
# lock_files = []              # more lock files never kept inside a layer
# boot_entries = 5             # layers the boot menu offers (GRUB), newest first; 0: none
# [data]                       # users' data, not software: each place a subvolume of its own
# add = []                     #   that every deployment mounts: in no layer, never rolled back
# remove = []                  #   (default: home root srv var/log var/mail var/spool var/tmp
#                              #   var/lib/{postgresql,mysql,docker,containers,libvirt,machines})
# [retention]                  # what a plain `ashctl prune` (and its daily timer) deletes:
# keep = 50                    #   the newest N snapshots stay,
# keep_days = 30               #   and those newer than D days;
# max_size = "20G"             #   the oldest go until the layers hold at most this.
# keep_base = true             # the base layer's snapshot is never pruned
# warn_free = "1G"             # a package operation warns below this much free space
#                              #   (default: 1G, or 10% of the filesystem when that is less)
"""

UNITS = ("ashlayers-prune.service", "ashlayers-prune.timer")
UNIT_DIR = "etc/systemd/system"
PACKAGED_UNIT_DIRS = ("usr/lib/systemd/system", "lib/systemd/system")


def _check_root(target: Target) -> None:
    root = target.root
    mount = mount_at(root)
    if mount is None:
        raise BackendError(
            f"{root} is not a mount point (setup needs the mount of a btrfs subvolume)",
            hint="mount the root's subvolume there, e.g. mount -o subvol=@ DEVICE PATH",
        )
    if mount.fstype != "btrfs":
        raise BackendError(
            f"{root} is a {mount.fstype} mount, not btrfs", hint="ashlayers needs a btrfs root"
        )
    if not target.fs.is_subvolume(root):
        raise BackendError(f"{root} is not a btrfs subvolume", hint="mount a subvolume there")
    if target.fs.info(root).id == TOP_LEVEL_ID:
        raise BackendError(
            f"{root} is the top level of its btrfs filesystem, not a subvolume in it",
            hint="ashlayers needs the root in a subvolume, e.g. @, so that rollbacks can swap it",
        )
    if (missing := missing_btrfs_progs(root)) is not None:
        raise BackendError(missing, hint="install btrfs-progs in that root, then run setup again")


BTRFS_CLI = ("usr/bin/btrfs", "usr/sbin/btrfs", "bin/btrfs", "sbin/btrfs")


def missing_btrfs_progs(root: str) -> str | None:
    """Why the root's hooks would fail at their first drift, or None: they run `btrfs send`
    (and the launchers `btrfs subvolume snapshot`) from the root's own btrfs-progs."""
    if any(os.path.exists(os.path.join(root, p)) for p in BTRFS_CLI):
        return None
    return f"btrfs-progs is not installed in {root} (the hooks run its `btrfs` command)"


def _ensure_store_mount(target: Target) -> str:
    """Create and mount the store subvolume; return its path inside the filesystem."""
    store_dir = target.store.path
    mounted = mount_at(store_dir)
    if mounted is not None and mounted.fstype == "btrfs":
        return mounted.fs_root
    root_mount = mount_at(target.root)
    assert root_mount is not None
    subvol = posixpath.join(
        posixpath.dirname(root_mount.fs_root.rstrip("/")) or "/", STORE_SUBVOLUME
    )
    top = mount_top(host_dir(target), root_mount.source)  # named by the root: no store yet
    try:
        path = os.path.join(top, subvol.lstrip("/"))
        if not target.fs.is_subvolume(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            target.fs.create(path)
            os.chmod(path, 0o700)
    finally:
        unmount_top(top)
    os.makedirs(store_dir, mode=0o700, exist_ok=True)
    mount_subvolume(root_mount.source, subvol, store_dir)
    return subvol


def _ensure_fstab(target: Target, subvol: str) -> bool:
    fstab = os.path.join(target.root, "etc/fstab")
    try:
        with open(fstab, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    mountpoint = target.config.store
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and fields[1] == mountpoint:
            return False
    root_mount = mount_at(target.root)
    assert root_mount is not None
    uuid = filesystem_uuid(root_mount.source)
    source = f"UUID={uuid}" if uuid else root_mount.source
    line = f"{source} {mountpoint} btrfs subvol={subvol},noatime 0 0\n"
    os.makedirs(os.path.dirname(fstab), exist_ok=True)
    if text and not text.endswith("\n"):
        text += "\n"
    write_atomic(fstab, (text + "# ashlayers store: layers and their records\n" + line).encode())
    return True


def _install_units(target: Target) -> list[str]:
    """The prune timer's units, in a root that boots with systemd. Enabled only when
    [retention] has a rule: pruning deletes history, so it runs on the user's rules alone
    (`systemctl enable --now ashlayers-prune.timer` once they are set)."""
    from ashcore.launcher import fill

    if not os.path.exists(os.path.join(target.root, "usr/lib/systemd/systemd")) and not (
        os.path.exists(os.path.join(target.root, "lib/systemd/systemd"))
    ):
        return []
    done = []
    folder = os.path.join(target.root, UNIT_DIR)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    # A native package ships the units in the distribution's folder: a copy in /etc would
    # shadow them and outlive the package's removal.
    packaged = next(
        (d for d in PACKAGED_UNIT_DIRS if os.path.exists(os.path.join(target.root, d, UNITS[1]))),
        None,
    )
    for unit in UNITS if packaged is None else ():
        data = fill(resources.files("ashcore").joinpath("files", unit).read_bytes(), target.root)
        path = os.path.join(folder, unit)
        if read_bytes(path) != data:
            write_atomic(path, data)
            os.chmod(path, 0o644)
            done.append(f"unit: /{UNIT_DIR}/{unit}")
    rules = target.config.retention
    wants = os.path.join(folder, "timers.target.wants", UNITS[1])
    if (rules.keep, rules.keep_days, rules.max_size) != (None, None, None) and not (
        os.path.lexists(wants)
    ):
        os.makedirs(os.path.dirname(wants), mode=0o755, exist_ok=True)
        os.symlink(f"/{packaged or UNIT_DIR}/{UNITS[1]}", wants)
        done.append(f"unit: enabled {UNITS[1]} (ash.toml has retention rules)")
    return done


def setup(target: Target) -> list[str]:
    """Make `target` ready. Returns what was done, one line each. Idempotent."""
    done: list[str] = []
    _check_root(target)
    subvol = _ensure_store_mount(target)
    done.append(f"store: subvolume {subvol} mounted at {target.config.store}")
    target.store.create_layout()
    if _ensure_fstab(target, subvol):
        done.append(f"fstab: added {target.config.store}")
    config = os.path.join(target.root, CONFIG_PATH)
    os.makedirs(os.path.join(target.root, HOOKS_DIR), mode=0o755, exist_ok=True)
    if not os.path.exists(config):
        write_atomic(config, DEFAULT_CONFIG.encode())
        done.append(f"config: wrote /{CONFIG_PATH}")
    commit_helper = os.path.join(target.root, COMMIT_HELPER)
    data = resources.files("ashcore").joinpath("files", "ash-commit").read_bytes()
    if read_bytes(commit_helper) != data:
        os.makedirs(os.path.dirname(commit_helper), mode=0o755, exist_ok=True)
        write_atomic(commit_helper, data)
        os.chmod(commit_helper, 0o755)
        done.append(f"hook: /{COMMIT_HELPER}")
    done += _install_units(target)
    for cache in ensure_caches(target.fs, target.root):
        done.append(f"kept out of layers: {cache} (a subvolume of its own)")
    from ashcore.data import keep_out

    done += keep_out(target)  # before the base layer: users' data is in no layer
    from ashcore.registry import managers

    for manager in managers():
        if manager.detect(target.root):
            for path in manager.install(target.root):
                done.append(f"hook: {path}")
    from ashcore.boot.setup import setup_boot

    done += setup_boot(target)  # before the base layer: its changes (fstab, grub) are in it
    dep = target.deployment()
    head, _ = target.store.head(dep.uuid)
    if head is None:
        op = Operation(
            origin=Origin(Origin.BASE),
            manager=None,
            argv=("ashctl", "setup"),
            owner=owner_of(os.getpid()),
            name="base",
        )
        begin(target, op, None)
        layer = commit(target, op, None)
        if layer is not None:
            from ashcore.sets import complete_now

            complete_now(target, layer.id)
            done.append(f"layer {layer.id}: base")
    from ashcore.boot.menu import refresh_quietly

    refresh_quietly(target)  # with the base layer in the menu
    return done
