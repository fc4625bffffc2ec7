"""The managers' caches, kept out of every layer by layout: each is a subvolume of its own.

A snapshot does not hold the subvolumes nested in its source (they show as empty folders), so
a cache that is a nested subvolume is in no layer: apt's pkgcache.bin (rewritten by every apt
run) and the downloaded package archives cost a layer no space, and the snapshots need not
write them out first (measured in the rig: a snapshot right after apt rewrote its 2 MB
pkgcache.bin, 30 ms inside the root's subvolume, 4 ms with the cache nested). Everything in
them is what the managers fetch or rebuild on their own.

`ashctl setup` makes them (an existing folder is copied into its subvolume, with reflinks);
a rollback gives the new deployment empty ones with the same folders (apt needs its
archives/partial), and deletes those of a deployment it retires.
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


def renew_caches(fs: Filesystem, old_root: str, new_root: str) -> None:
    """Give the deployment at `new_root` (a snapshot, where these subvolumes are empty
    folders) empty caches with the folders, owners and modes of `old_root`'s, and a writable
    snapshot of each of `old_root`'s package lists (shared, no copy)."""
    for rel in KEPT_OUT:
        old, new = os.path.join(old_root, rel), os.path.join(new_root, rel)
        if not fs.is_subvolume(old) or fs.is_subvolume(new):
            continue
        if os.path.isdir(new):
            os.rmdir(new)  # the empty folder a nested subvolume leaves in a snapshot
        os.makedirs(os.path.dirname(new), exist_ok=True)
        if rel in INDEXES:
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
