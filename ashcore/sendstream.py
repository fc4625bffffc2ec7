"""The paths a btrfs send stream touches: the fast way to tell what changed between snapshots.

Format: "btrfs-stream\\0", le32 version, then commands (le32 length, le16 command, le32 crc)
each followed by attributes (le16 type, le16 length, data). See btrfs-progs send.h.
"""

from __future__ import annotations

import re
import struct

MAGIC = b"btrfs-stream\x00"

CMD_SUBVOL = 1
CMD_SNAPSHOT = 2
CMD_UTIMES = 20
CMD_END = 21
A_PATH = 15
A_PATH_TO = 16
A_PATH_LINK = 17

_ORPHAN = re.compile(r"^o\d+-\d+-\d+$")  # the temporary names send gives new inodes
_HEADER = struct.Struct("<IHI")
_ATTR = struct.Struct("<HH")


def changed_paths(stream: bytes) -> set[str]:
    """Every path the stream creates, removes or changes, except time-only updates."""
    if not stream.startswith(MAGIC):
        raise ValueError("not a btrfs send stream")
    changed: set[str] = set()
    offset = len(MAGIC) + 4
    end = len(stream)
    while offset + _HEADER.size <= end:
        length, cmd, _crc = _HEADER.unpack_from(stream, offset)
        offset += _HEADER.size
        body_end = offset + length
        if cmd == CMD_END:
            break
        if cmd not in (CMD_UTIMES, CMD_SUBVOL, CMD_SNAPSHOT):  # those name the subvolume
            pos = offset
            while pos + _ATTR.size <= body_end:
                kind, size = _ATTR.unpack_from(stream, pos)
                pos += _ATTR.size
                if kind in (A_PATH, A_PATH_TO):
                    path = stream[pos : pos + size].decode("utf-8", "surrogateescape")
                    if not any(_ORPHAN.match(part) for part in path.split("/")):
                        changed.add(path)
                pos += size
        offset = body_end
    return changed
