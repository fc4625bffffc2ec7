"""What the managers fetch or rebuild on their own, kept out of every layer by layout.

Each folder a manager declares (ashcore/manager.py) is a subvolume of its own, made by
`ashctl setup`. A snapshot does not hold the subvolumes nested in its source (they show as
empty folders), so what is in them is in no layer and costs a layer nothing:
- caches (Manager.caches): binary caches, downloaded packages, repository metadata. A
  rollback gives the new deployment empty ones with the same folders (a manager may need
  its partial/ folder): the managers rebuild or refetch them on their next run.
- indexes (Manager.indexes): the repositories' package lists. No install changes them, but
  every refresh that finds news writes them anew, and the next layer kept that copy. They
  describe the mirror, not the system, and the managers cannot install without them, so a
  rollback gives the new deployment a writable snapshot of the current ones (no copy): the
  managers work at once, with lists the mirror still serves (a layer's own would name
  versions it has dropped).
Nesting costs no time on the hot path (a snapshot skips them); the other way, removing
files from each sealed snapshot, costs a second btrfs commit per layer. The figures that
chose it are in the first plugin's declaration (plugins/apt/manager.py).

`ashctl setup` makes them (an existing folder is copied into its subvolume, with reflinks);
a rollback renews them (`renew_caches`), and deletes those of a deployment it retires.
"""

from __future__ import annotations

import os
import shutil

from ashcore import registry
from ashcore.log import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.btrfs import Filesystem

log = logger(__name__)


def kept_out() -> dict[str, str]:
    """Every manager's caches and lists (ashcore/manager.py): folder -> the program whose
    presence in a root makes it."""
    caches, indexes = registry.kept_out()
    return caches | indexes


def _carried(rel: str) -> bool:
    return rel in registry.kept_out()[1]


NEW, OLD = ".ash-new", ".ash-old"  # a conversion in progress (setup finishes or redoes it)


def ensure_caches(fs: Filesystem, root: str) -> list[str]:
    """Make each present manager's cache a subvolume of `root`; returns those made."""
    made = []
    for rel, manager in kept_out().items():
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
    for rel in kept_out():
        old, new = os.path.join(old_root, rel), os.path.join(new_root, rel)
        if not fs.is_subvolume(old) or fs.is_subvolume(new):
            continue
        if os.path.isdir(new):
            os.rmdir(new)  # the empty folder a nested subvolume leaves in a snapshot
        os.makedirs(os.path.dirname(new), exist_ok=True)
        if carry or _carried(rel):
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
    for rel in kept_out():
        path = os.path.join(root, rel)
        if fs.is_subvolume(path):
            fs.delete(path)
