"""A `btrfs send` stream checked command by command on its way into `btrfs receive`.

What arrives from another machine is untrusted. Before any command reaches `btrfs receive`
(which runs chrooted into the store's layers folder, `-C`), it is checked here:
- the stream makes exactly one subvolume, first, with the identity the line's index names,
  and (incremental) from the layer the index says; its name is replaced by ours;
- every path is relative and has no `..` part (a link's target is data, not a path);
- a clone takes data only from that subvolume or the one it is sent against, never from
  another subvolume of the receiving filesystem (which would copy a file of another root);
- no command or attribute this code does not know.

Format (btrfs-progs send.h): "btrfs-stream\\0", le32 version, then commands: le32 length,
le16 command, le32 crc32c (of the command with the crc field zeroed), then attributes (le16
type, le16 length, data; in version 2 a write's data attribute runs to the command's end).
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from typing import IO

from ashcore.errors import AshError

MAGIC = b"btrfs-stream\x00"
C_SUBVOL, C_SNAPSHOT, C_LINK, C_CLONE, C_END = 1, 2, 10, 16, 21
C_WRITE, C_ENCODED_WRITE = 15, 25
KNOWN_COMMANDS = set(range(1, 27))
A_UUID, A_PATH, A_PATH_TO, A_PATH_LINK, A_DATA = 1, 15, 16, 17, 19
A_CLONE_UUID, A_CLONE_CTRANSID, A_CLONE_PATH = 20, 21, 22
KNOWN_ATTRIBUTES = set(range(1, 34))
PATHS = (A_PATH, A_PATH_TO, A_CLONE_PATH)
COMMAND_LIMIT = 1 << 20  # bytes: send writes at most 48 KiB of data per command (v2: 128 KiB+)

_HEADER = struct.Struct("<IHI")
_ATTR = struct.Struct("<HH")


class StreamError(AshError):
    """A stream that could write outside its layer, or is not a send stream."""


def _refuse(what: str) -> StreamError:
    return StreamError(
        f"a received stream was refused: {what}; nothing was kept",
        hint="the artifact is damaged or hostile: do not use it",
    )


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """btrfs's crc32c (seed 0, no final inversion), as send.c computes a command's."""
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _attributes(body: bytes, version: int, command: int) -> list[tuple[int, bytes]]:
    attrs, pos = [], 0
    while pos < len(body):
        if pos + _ATTR.size > len(body):
            raise _refuse("a truncated attribute")
        kind, size = _ATTR.unpack_from(body, pos)
        pos += _ATTR.size
        if kind not in KNOWN_ATTRIBUTES:
            raise _refuse(f"an unknown attribute {kind}")
        if version >= 2 and kind == A_DATA and command in (C_WRITE, C_ENCODED_WRITE):
            attrs.append((kind, body[pos - 2 :]))  # v2: the data has no length; it is the rest
            break
        if pos + size > len(body):
            raise _refuse("a truncated attribute")
        attrs.append((kind, body[pos : pos + size]))
        pos += size
    return attrs


def _check_path(raw: bytes) -> None:
    if raw.startswith(b"/") or b"\x00" in raw:  # empty: the layer's own top folder
        raise _refuse(f"the path {raw[:80]!r} is not inside the layer")
    if any(part == b".." for part in raw.split(b"/")):
        raise _refuse(f"the path {raw[:80]!r} climbs out of the layer")


def _uuid(raw: bytes) -> str:
    if len(raw) != 16:
        raise _refuse("a malformed uuid")
    return uuidlib.UUID(bytes=raw).hex


def _encode(command: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(_ATTR.pack(k, len(v)) + v for k, v in attrs)
    header = _HEADER.pack(len(body), command, 0)
    crc = crc32c(header + body)
    return _HEADER.pack(len(body), command, crc) + body


Parent = tuple[str, int]
"""This store's subvolume a stream is received against: its own uuid and ctransid."""


def relay(
    source: IO[bytes],
    sink: IO[bytes],
    *,
    name: str,
    identity: str,
    against: str | None,
    parent: Parent | None = None,
) -> None:
    """Copy a checked stream from `source` to `sink`, its subvolume renamed `name`, and
    every reference to the layer it is sent against (`against`) made a reference to this
    store's subvolume `parent`: `btrfs receive` looks a parent up by uuid across the whole
    filesystem, and takes the first subvolume that claims it (another root's copy, which its
    mount cannot reach, or one a user made to claim it); this store's own uuid names one."""
    head = source.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
        raise _refuse("not a btrfs send stream")
    version = struct.unpack_from("<I", head, len(MAGIC))[0]
    if version not in (1, 2, 3):
        raise _refuse(f"send stream version {version}")
    sink.write(head)
    first = True
    while True:
        header = source.read(_HEADER.size)
        if not header:
            raise _refuse("the stream ends without its end command")
        if len(header) < _HEADER.size:
            raise _refuse("a truncated command")
        length, command, _crc = _HEADER.unpack(header)
        if length > COMMAND_LIMIT or command not in KNOWN_COMMANDS:
            raise _refuse(f"an unknown or oversized command ({command}, {length} bytes)")
        body = source.read(length)
        if len(body) < length:
            raise _refuse("a truncated command")
        if first:
            sink.write(_first(command, body, version, name, identity, against, parent))
            first = False
            continue
        if command in (C_SUBVOL, C_SNAPSHOT):
            raise _refuse("a second subvolume in one stream")
        attrs = _attributes(body, version, command)
        for kind, value in attrs:
            if kind in PATHS or (kind == A_PATH_LINK and command == C_LINK):
                _check_path(value)
            elif (
                kind == A_CLONE_UUID
                and command == C_CLONE
                and _uuid(value) not in (identity, against)
            ):
                raise _refuse("a clone from a subvolume that is not the layer's parent")
        if command == C_CLONE and parent is not None and against is not None:
            sink.write(_to_parent(command, attrs, against, parent))
            continue
        sink.write(header)
        sink.write(body)
        if command == C_END:
            return


def _to_parent(command: int, attrs: list[tuple[int, bytes]], against: str, parent: Parent) -> bytes:
    """The command with its clone source `against` named as this store's `parent`."""
    found = dict(attrs)
    if _uuid(found.get(A_CLONE_UUID, b"")) != against:
        return _encode(command, attrs)
    local = {
        A_CLONE_UUID: uuidlib.UUID(parent[0]).bytes,
        A_CLONE_CTRANSID: struct.pack("<Q", parent[1]),
    }
    return _encode(command, [(k, local.get(k, v)) for k, v in attrs])


def _first(
    command: int,
    body: bytes,
    version: int,
    name: str,
    identity: str,
    against: str | None,
    parent: Parent | None,
) -> bytes:
    attrs = _attributes(body, version, command)
    found = dict(attrs)
    if command == C_SUBVOL and against is not None:
        raise _refuse("a full stream where the index names a parent")
    if command == C_SNAPSHOT:
        if against is None or _uuid(found.get(A_CLONE_UUID, b"")) != against:
            raise _refuse("a stream against another layer than the index names")
    elif command != C_SUBVOL:
        raise _refuse("a stream that does not start with its subvolume")
    if _uuid(found.get(A_UUID, b"")) != identity:
        raise _refuse("a stream of another layer than the index names")
    renamed = [(k, name.encode() if k == A_PATH else v) for k, v in attrs]
    if command == C_SNAPSHOT and parent is not None and against is not None:
        return _to_parent(command, renamed, against, parent)
    return _encode(command, renamed)
