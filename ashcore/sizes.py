"""Layer sizes without qgroups: the bytes a layer's snapshot added over its parent's.

Which paths changed between the two snapshots comes from `btrfs send --no-data` (as drift's
confirmation does); for each changed regular file, FIEMAP gives its extents in the layer and
in the parent: the layer's extents (by physical address) that the parent's file does not
share are the bytes it added. A file rewritten in place (dpkg's status) counts whole, an
append counts its new extents only, a file the parent shares counts nothing. Each changed
path also costs the metadata that names it (METADATA_PER_PATH, an estimate: inode, name and
extent items, and the tree blocks copied to hold them).

A layer added nothing the base did not have when it was taken: the base's size is 0, and the
sum over the layers that keep their snapshots is what the store holds beyond the root it was
set up on. Qgroups would tell this exactly, and are known to stall large filesystems; `btrfs
filesystem du` took minutes on a store of 200 layers.

Computed off the manager's path: by the helper after it describes a layer, by `ashctl run`,
and by `prune` (which needs them all, and recomputes a child whose parent it deletes). The
changed paths found on the way are kept as the layer's change list (ashcore/changes.py).
"""

from __future__ import annotations

import array
import fcntl
import os
import stat
import struct

from ashcore.log import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.target import Target

log = logger(__name__)

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP = struct.Struct("=QQIIII")  # fm_start fm_length fm_flags fm_mapped fm_count reserved
EXTENT = struct.Struct("=QQQQQIIII")  # logical physical length reserved*2 flags reserved*3
FIEMAP_FLAG_SYNC = 0x1
EXTENT_LAST = 0x1
EXTENT_INLINE = 0x200  # data kept in the metadata: no physical address of its own
BATCH = 256
METADATA_PER_PATH = 512
SIZE_WALK = 3  # layers measured after each operation (more are measured by `prune`)


def extents(path: str) -> list[tuple[int, int]]:
    """The file's extents as (physical address, length); inline data as (-1, length)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        found: list[tuple[int, int]] = []
        start = 0
        while True:
            buf = array.array("B", bytes(FIEMAP.size + BATCH * EXTENT.size))
            FIEMAP.pack_into(buf, 0, start, (1 << 64) - 1 - start, 0, 0, BATCH, 0)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
            mapped = FIEMAP.unpack_from(buf, 0)[3]
            if mapped == 0:
                return found
            last = False
            for i in range(mapped):
                logical, physical, length, _, _, flags, *_ = EXTENT.unpack_from(
                    buf, FIEMAP.size + i * EXTENT.size
                )
                found.append((-1 if flags & EXTENT_INLINE else physical, length))
                start = logical + length
                last = last or bool(flags & EXTENT_LAST)
            if last:
                return found
    finally:
        os.close(fd)


def new_bytes(mine: list[tuple[int, int]], theirs: list[tuple[int, int]]) -> int:
    """Bytes of `mine` whose physical ranges `theirs` does not cover (inline data: all)."""
    covered = sorted((p, p + n) for p, n in theirs if p >= 0)
    total = 0
    for physical, length in mine:
        if physical < 0:
            total += length
            continue
        start, end = physical, physical + length
        for low, high in covered:
            if high <= start or low >= end:
                continue
            if low > start:
                total += low - start
            start = max(start, high)
            if start >= end:
                break
        total += max(0, end - start)
    return total


def _regular(path: str) -> os.stat_result | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def added(parent: str, child: str, paths: set[str]) -> int:
    """The bytes the snapshot `child` holds that `parent` does not, over the changed `paths`."""
    total = 0
    seen: set[int] = set()
    for rel in paths:
        total += METADATA_PER_PATH
        st = _regular(os.path.join(child, rel))
        if st is None or st.st_ino in seen:
            continue
        seen.add(st.st_ino)
        try:
            mine = extents(os.path.join(child, rel))
            theirs = (
                extents(os.path.join(parent, rel)) if _regular(os.path.join(parent, rel)) else []
            )
        except OSError as e:  # a filesystem without FIEMAP: count the file whole
            log.debug("no extents of %s: %s", rel, e)
            mine, theirs = [(-1, st.st_blocks * 512)], []
        total += new_bytes(mine, theirs)
    return total


class Measured:
    """What measuring a layer found: the bytes it added, and the paths it changed over the
    layer `against` (None for a base: it added nothing, and changed nothing on record)."""

    __slots__ = ("against", "paths", "size")

    def __init__(self, size: int, against: int | None, paths: set[str]) -> None:
        self.size, self.against, self.paths = size, against, paths


def measure(target: Target, layer_id: int) -> Measured | None:
    """What layer `layer_id` added over its nearest ancestor that keeps its snapshot (None
    when it has no snapshot; a size of 0 when it has no such ancestor: it is a base)."""
    store = target.store
    path = store.layer_path(layer_id)
    if not os.path.isdir(path):
        return None
    from ashcore.changes import snapshot_ancestor

    parent = snapshot_ancestor(store, layer_id)
    if parent is None:
        return Measured(0, None, set())
    old = store.layer_path(parent)
    paths = target.fs.changed_paths(old, path)
    return Measured(added(old, path, paths), parent, paths)


def record_size(target: Target, layer_id: int, measured: Measured) -> None:
    """Store a layer's size in its record and its manifest, and its change list beside
    them unless it has one (call under the store lock). A list taken once stays: measured
    again after its parent was pruned, a layer's change since its parent is still its own."""
    from ashcore.changes import Changes, read_changes, write_changes

    target.store.set_size(layer_id, measured.size)
    target.store.amend_manifest(layer_id, "size", measured.size, durable=False)
    if measured.against is not None and read_changes(target.store, layer_id) is None:
        write_changes(target.store, layer_id, Changes.of(measured.against, measured.paths))


def complete_sizes(target: Target, limit: int | None = None) -> int:
    """Measure each layer that keeps its snapshot and has no size yet, newest first (up to
    `limit`); returns how many were recorded. The measuring reads read-only snapshots
    without the store lock (a package operation need not wait for it); the lock is taken
    to record each result, if the layer is still there."""
    from ashcore.errors import AshError

    store = target.store
    done = 0
    for layer_id in store.unsized():
        if limit is not None and done >= limit:
            break
        try:
            measured = measure(target, layer_id)
        except (OSError, AshError) as e:  # pruned meanwhile, or unreadable: another time
            log.debug("no size for layer %d: %s", layer_id, e)
            continue
        if measured is None:
            continue
        with store.locked(target.config.lock_timeout):
            if layer_id in store.unsized():
                record_size(target, layer_id, measured)
                done += 1
    return done


NEEDED = 64 << 20  # bytes free a try, a replay or an apply needs at least (a tenth of a small fs)


def require_free(path: str, what: str) -> None:
    """Refuse `what` before it starts when the filesystem of `path` has not the room it needs
    (a snapshot, a manager's downloads and unpacking): one that runs out halfway leaves a
    stage behind (a try died of SIGBUS at 200 KB free)."""
    from ashcore.errors import BackendError

    st = os.statvfs(path)
    free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    needed = min(NEEDED, size // 10)
    if free < needed:
        raise BackendError(
            f"only {human(free)} free on {path}: {what} needs at least {human(needed)}",
            hint="`ashctl list` shows what each layer holds; `ashctl prune --max-size SIZE`"
            " frees the oldest snapshots",
        )


def human(size: int | None) -> str:
    """1.5M, 230K, 12G (binary units, as `du -h`); "?" when not measured yet."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 10 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.0f}T"
