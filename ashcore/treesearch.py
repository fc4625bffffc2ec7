"""Which inodes of a subvolume changed since a generation: btrfs's TREE_SEARCH ioctl, as
`btrfs subvolume find-new` uses it, and INO_PATHS to name them. No snapshot, no subprocess.

The search visits only tree blocks written after the generation, so its cost follows the
size of the change, not of the root. An inode counts as changed when its item was written
after the generation and its ctime is not older than `since` (an atime update, which reading
a file makes, leaves ctime alone). A removed file shows as its parent folder.
"""

from __future__ import annotations

import array
import fcntl
import os
import struct


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (0x94 << 8) | nr


SEARCH_KEY = struct.Struct("=QQQQQQQIIII32x")  # btrfs_ioctl_search_key, 104 bytes
SEARCH_HEADER = struct.Struct(
    "=QQQII"
)  # btrfs_ioctl_search_header: transid objectid offset type len
SEARCH_BUF = 4096
IOC_TREE_SEARCH = _iowr(17, SEARCH_BUF)
INO_PATH_ARGS = struct.Struct("=QQ32xQ")  # btrfs_ioctl_ino_path_args: inum size reserved fspath
IOC_INO_PATHS = _iowr(35, INO_PATH_ARGS.size)
INODE_ITEM_KEY = 1
FIRST_FREE_OBJECTID = 256  # the subvolume's root folder
MAX_U64 = (1 << 64) - 1
# In btrfs_inode_item: transid at 8, ctime (le64 sec, le32 nsec) at 124.
_TRANSID = struct.Struct("=Q")
_CTIME = struct.Struct("=QI")


def changed_inodes(fd: int, tree_id: int, generation: int, since: float) -> list[int]:
    """Inode numbers changed in subvolume `tree_id` after `generation` (ctime >= since)."""
    changed: list[int] = []
    min_objectid, min_type, min_offset = FIRST_FREE_OBJECTID, 0, 0
    while True:
        buf = bytearray(SEARCH_BUF)
        SEARCH_KEY.pack_into(
            buf,
            0,
            tree_id,
            min_objectid,
            MAX_U64,
            min_offset,
            MAX_U64,
            generation + 1,
            MAX_U64,
            min_type,
            255,
            4096,
            0,
        )
        fcntl.ioctl(fd, IOC_TREE_SEARCH, buf, True)
        count = struct.unpack_from("=I", buf, 7 * 8 + 8)[0]
        if count == 0:
            return changed
        pos = SEARCH_KEY.size
        objectid = offset = kind = 0
        for _ in range(count):
            _, objectid, offset, kind, length = SEARCH_HEADER.unpack_from(buf, pos)
            pos += SEARCH_HEADER.size
            if kind == INODE_ITEM_KEY and length >= 136:
                transid = _TRANSID.unpack_from(buf, pos + 8)[0]
                sec, nsec = _CTIME.unpack_from(buf, pos + 124)
                if transid > generation and sec + nsec / 1e9 >= since:
                    changed.append(objectid)
            pos += length
        # Go on after the last key returned.
        if offset < MAX_U64:
            min_objectid, min_type, min_offset = objectid, kind, offset + 1
        elif kind < 255:
            min_objectid, min_type, min_offset = objectid, kind + 1, 0
        elif objectid < MAX_U64:
            min_objectid, min_type, min_offset = objectid + 1, 0, 0
        else:
            return changed


class PathTooLong(Exception):
    """An inode has a path the ioctl cannot return (longer than its 4 KiB buffer)."""


def inode_paths(fd: int, inode: int) -> list[str]:
    """The paths of an inode, relative to the subvolume of `fd` ("" for its root). Raises
    PathTooLong when one does not fit: a path left out would be a change missed."""
    if inode == FIRST_FREE_OBJECTID:
        return [""]
    size = 4096
    out = array.array("B", bytes(size))
    address = out.buffer_info()[0]
    args = bytearray(INO_PATH_ARGS.pack(inode, size, address))
    fcntl.ioctl(fd, IOC_INO_PATHS, args, True)
    data = out.tobytes()
    # btrfs_data_container: bytes_left, bytes_missing, elem_cnt, elem_missed
    count, missed = struct.unpack_from("=II", data, 8)
    if missed:
        raise PathTooLong(inode)
    paths = []
    for i in range(count):
        offset = struct.unpack_from("=Q", data, 16 + 8 * i)[0]
        start = 16 + offset
        end = data.index(b"\0", start)
        paths.append(data[start:end].decode("utf-8", "surrogateescape"))
    return paths


def changed_paths_since(path: str, tree_id: int, generation: int, since: float) -> set[str] | None:
    """The paths of the inodes changed since (generation, since); None when one of them has
    a path too long to name (the caller takes a way that can tell)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return {
            p
            for inode in changed_inodes(fd, tree_id, generation, since)
            for p in inode_paths(fd, inode)
        }
    except PathTooLong:
        return None
    finally:
        os.close(fd)
