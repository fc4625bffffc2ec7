"""What the managers fetch or rebuild on their own, kept out of every layer by layout.

Each folder below is a subvolume of its own, made by `ashctl setup`. A snapshot does not hold
the subvolumes nested in its source (they show as empty folders), so what is in them is in
no layer and costs a layer nothing:
- CACHES: apt's pkgcache.bin and srcpkgcache.bin (rewritten by every apt run: 50 MB each
  with sid's full list), the downloaded archives of apt, pacman, dnf5 and dnf4, and dnf's
  repository metadata. A rollback gives the new deployment empty ones with the same folders
  (apt needs its archives/partial): the managers rebuild or refetch them on their next run.
- INDEXES: the repositories' package lists, apt's /var/lib/apt/lists (62 MB for sid main)
  and pacman's sync databases (and aptitude's states, see below). No install changes them,
  but every `apt update` or `pacman -Sy` that finds news writes them anew, and the next
  layer kept that copy. They describe the mirror, not the system, and the managers cannot
  install without them, so a rollback gives the new deployment a writable snapshot of the
  current ones (no copy): apt and pacman work at once, with lists the mirror still serves
  (a layer's own would name versions it has dropped).

Chosen by measurement (`bench/bench_space.py --ops 10`, rig root with sid's full main list,
`apt-get install`/`remove` of a one-file package alternating; used bytes after everything
is freed, metadata counted per copy): 0.63 MiB per operation (0.22 MiB data, 0.22 MiB
metadata twice): dpkg's status and status-old (0.29 MiB each before compression: real
state, and a backup dpkg rewrites each run), apt's extended_states and logs, and the
metadata a snapshot and the next run's writes copy. An `apt-get update` that finds a new
list, then an install: 17.1 MiB per layer with the lists in the root's subvolume, 0.6-0.85
MiB with them nested. Nesting costs no time on the hot path (a snapshot skips them); the
other way, removing files from each sealed snapshot, costs a second btrfs commit per layer.
dpkg's status-old (about 0.1 MiB per layer on disk) and debconf's *.dat-old stay: they sit
beside the state they back up, and taking them out means that second commit.

`ashctl setup` makes them (an existing folder is copied into its subvolume, with reflinks);
a rollback renews them (`renew_caches`), and deletes those of a deployment it retires.
"""

from __future__ import annotations

import os
import shutil

from ashcore.log import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.btrfs import Filesystem

log = logger(__name__)

CACHES = {
    # cache folder: the manager whose presence in the root makes it
    "var/cache/apt": "usr/bin/apt-get",
    "var/cache/pacman/pkg": "usr/bin/pacman",
    "var/cache/libdnf5": "usr/bin/dnf5",
    "var/cache/dnf": "usr/bin/dnf-3",
}
INDEXES = {
    # the repositories' package lists, fetched by `apt update` / `pacman -Sy`: carried over
    "var/lib/apt/lists": "usr/bin/apt-get",
    "var/lib/pacman/sync": "usr/bin/pacman",
    # aptitude's pkgstates and pkgstates.old (7.9 MB each with sid's lists), rewritten by
    # every aptitude run: 16-17 MiB in each of its layers and in the drift after it. They
    # hold its view of the lists (which packages are new) and its pending selections, which
    # it rebuilds, and also marks of its own (forbid-version, user tags): those are the
    # admin's wishes about the mirror, not the installed system, so they are carried over
    # (not rolled back) as the lists they refer to are. What aptitude's choices rest on
    # that is state (holds in dpkg's status, automatic marks in apt's extended_states)
    # stays in every layer. Made in any apt root: aptitude is often installed after setup.
    "var/lib/aptitude": "usr/bin/apt-get",
}
KEPT_OUT = CACHES | INDEXES
NEW, OLD = ".ash-new", ".ash-old"  # a conversion in progress (setup finishes or redoes it)


def ensure_caches(fs: Filesystem, root: str) -> list[str]:
    """Make each present manager's cache a subvolume of `root`; returns those made."""
    made = []
    for rel, manager in KEPT_OUT.items():
        path = os.path.join(root, rel)
        if not os.path.exists(os.path.join(root, manager)):
            continue
        if not os.path.isdir(os.path.dirname(path)):
            continue  # the manager never ran here (no /var/lib/pacman): nothing to keep out
        _finish(fs, path)
        if fs.is_subvolume(path):
            continue
        new = path + NEW
        fs.create(new)
        if os.path.isdir(path):
            _copy(path, new)
            os.rename(path, path + OLD)
        os.rename(new, path)
        _finish(fs, path)
        made.append("/" + rel)
    return made


def _finish(fs: Filesystem, path: str) -> None:
    """Remove what a killed conversion left: the copy being made, or the folder replaced."""
    if os.path.lexists(path + NEW):
        fs.delete(path + NEW)
    if os.path.lexists(path + OLD):
        shutil.rmtree(path + OLD)


def _copy(source: str, dest: str) -> None:
    """The folder's entries, owners, modes and times, data shared by reflinks."""
    from ashcore.run import run

    run(["cp", "-a", "--reflink=auto", "--", source + "/.", dest])
    st = os.lstat(source)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, st.st_mode & 0o7777)


def renew_caches(fs: Filesystem, old_root: str, new_root: str, *, carry: bool = False) -> None:
    """Give the deployment at `new_root` (a snapshot, where these subvolumes are empty
    folders) empty caches with the folders, owners and modes of `old_root`'s, and a writable
    snapshot of each of `old_root`'s package lists (shared, no copy). `carry`: the caches
    too are snapshots of the current ones (a replay or a try, which run the managers there
    at once: apt need not rebuild its 50 MB pkgcache.bin first)."""
    for rel in KEPT_OUT:
        old, new = os.path.join(old_root, rel), os.path.join(new_root, rel)
        if not fs.is_subvolume(old) or fs.is_subvolume(new):
            continue
        if os.path.isdir(new):
            os.rmdir(new)  # the empty folder a nested subvolume leaves in a snapshot
        os.makedirs(os.path.dirname(new), exist_ok=True)
        if rel in INDEXES or carry:
            fs.snapshot(old, new, read_only=False)
            continue
        fs.create(new)
        for top, dirs, _ in os.walk(old):
            for d in dirs:
                src = os.path.join(top, d)
                dst = os.path.join(new, os.path.relpath(src, old))
                st = os.lstat(src)
                os.mkdir(dst, st.st_mode & 0o7777)
                os.chown(dst, st.st_uid, st.st_gid)
        st = os.lstat(old)
        os.chown(new, st.st_uid, st.st_gid)
        os.chmod(new, st.st_mode & 0o7777)


def drop_caches(fs: Filesystem, root: str) -> None:
    """Delete the cache subvolumes of a deployment that is being deleted (ours, regenerable:
    any other nested subvolume still keeps the deployment from being deleted)."""
    for rel in KEPT_OUT:
        path = os.path.join(root, rel)
        if fs.is_subvolume(path):
            fs.delete(path)
