"""Each layer's change list: the paths its snapshot changed over its parent's, kept beside
its manifest (`layers/<id>.changes`) so that `ashctl blame` reads records, not snapshots.

Recorded when the layer is measured (ashcore/sizes.py: the helper after it describes a
layer, `ashctl run`, a replay's end, prune), from the same `btrfs send --no-data` the size
needs: nothing more on the manager's time. A layer measured before lists were kept gets one
when blame first needs it, from its snapshot and its parent's, if both are still there.

The file, written atomically: one header line, `ashlayers-changes 1 <against> <plain|zlib>`,
then the paths (relative to the root) each between NUL bytes (a file name may hold a
newline, never a NUL), compressed with zlib when longer than COMPRESS_OVER bytes (an
upgrade of a few hundred packages names tens of thousands of paths). `against` is the layer
the list is taken from: the parent, or when the parent's snapshot was pruned first, the
nearest ancestor that kept one (the list then also holds what the layers between changed).
Like the manifest, it stays when the snapshot is pruned: a pruned layer keeps its history.
"""

from __future__ import annotations

import contextlib
import os
import zlib

from ashcore.log import logger
from ashcore.ondisk import read_bytes, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ashcore.store import Store
    from ashcore.target import Target

log = logger(__name__)

MAGIC = b"ashlayers-changes"
FORMAT = 1
COMPRESS_OVER = 4096  # bytes: below this, zlib saves less than a disk block


class Changes:
    """A layer's change list as stored: the paths between NUL bytes, searched in place."""

    __slots__ = ("against", "body")

    def __init__(self, against: int | None, body: bytes) -> None:
        self.against = against
        self.body = body  # b"\0a\0b/c\0": every path with a NUL on each side

    @classmethod
    def of(cls, against: int | None, paths: Iterable[str]) -> Changes:
        encoded = sorted(p.strip("/").encode("utf-8", "surrogateescape") for p in paths)
        return cls(against, b"\0" + b"\0".join(e for e in encoded if e) + b"\0")

    def paths(self) -> list[str]:
        return [p.decode("utf-8", "surrogateescape") for p in self.body.split(b"\0") if p]

    def touches(self, rel: str) -> list[str]:
        """The paths of this list that are `rel` or below it (a folder: all it holds)."""
        key = rel.strip("/").encode("utf-8", "surrogateescape")
        if not key:
            return self.paths()
        body = self.body
        found = []
        if body.find(b"\0" + key + b"\0") >= 0:
            found.append(rel.strip("/"))
        start = body.find(b"\0" + key + b"/")
        while start >= 0:  # sorted: what is below `rel` is one run, up to the first other
            end = body.index(b"\0", start + 1)
            path = body[start + 1 : end]
            if not path.startswith(key + b"/"):
                break
            found.append(path.decode("utf-8", "surrogateescape"))
            start = end if end + 1 < len(body) else -1
        return found

    def to_bytes(self) -> bytes:
        packed = len(self.body) > COMPRESS_OVER
        kind = b"zlib" if packed else b"plain"
        against = b"-" if self.against is None else str(self.against).encode()
        header = b" ".join((MAGIC, str(FORMAT).encode(), against, kind)) + b"\n"
        return header + (zlib.compress(self.body, 6) if packed else self.body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Changes | None:
        """The list a file holds; None when it is torn or of a format this code does not
        know (then it is taken again from the snapshots)."""
        header, newline, rest = data.partition(b"\n")
        parts = header.split(b" ")
        if not newline or len(parts) != 4 or parts[0] != MAGIC or parts[1] != b"1":
            return None
        against = None if parts[2] == b"-" else int(parts[2]) if parts[2].isdigit() else -1
        if against == -1:
            return None
        try:
            body = zlib.decompress(rest) if parts[3] == b"zlib" else rest
        except zlib.error:
            return None
        if parts[3] not in (b"zlib", b"plain") or body[:1] != b"\0" or body[-1:] != b"\0":
            return None
        return cls(against, body)


def changes_path(store: Store, layer_id: int) -> str:
    return os.path.join(store.layers_dir, f"{layer_id}.changes")


def read_changes(store: Store, layer_id: int) -> Changes | None:
    data = read_bytes(changes_path(store, layer_id))
    return Changes.from_bytes(data) if data is not None else None


def write_changes(store: Store, layer_id: int, changes: Changes) -> None:
    """Keep a layer's change list (under the store lock, the layer's record still there).
    Not fsynced, as its manifest: a list lost to a power cut is taken again when needed."""
    write_atomic(changes_path(store, layer_id), changes.to_bytes(), durable=False)


def forget_changes(store: Store, layer_id: int) -> None:
    """A deleted layer's list goes with its record."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(changes_path(store, layer_id))


def snapshot_ancestor(store: Store, layer_id: int) -> int | None:
    """The nearest ancestor of the layer that still has its snapshot (None: there is none)."""
    parent = store.get(layer_id).parent
    while parent is not None and not os.path.isdir(store.layer_path(parent)):
        parent = store.get(parent).parent
    return parent


def keep_changes(target: Target, layer_id: int) -> Changes | None:
    """The layer's change list: the one kept, else taken now from its snapshot and its
    nearest ancestor's that are still there, and kept (call under the store lock). None
    when it cannot be known (its snapshot was pruned before lists were kept; a base)."""
    store = target.store
    found = read_changes(store, layer_id)
    if found is not None:
        return found
    path = store.layer_path(layer_id)
    if not os.path.isdir(path):
        return None
    parent = snapshot_ancestor(store, layer_id)
    if parent is None:
        return None
    changes = Changes.of(parent, target.fs.changed_paths(store.layer_path(parent), path))
    try:
        write_changes(store, layer_id, changes)
    except OSError as e:  # a full or read-only store: known now, kept another time
        log.debug("the change list of layer %d is not kept: %s", layer_id, e)
    return changes
