from __future__ import annotations

import struct

import pytest

from ashcore.sendstream import A_PATH, A_PATH_TO, MAGIC, changed_paths


def cmd(kind: int, *attrs: tuple[int, bytes]) -> bytes:
    body = b"".join(struct.pack("<HH", t, len(v)) + v for t, v in attrs)
    return struct.pack("<IHI", len(body), kind, 0) + body


def stream(*cmds: bytes) -> bytes:
    return MAGIC + struct.pack("<I", 1) + b"".join(cmds) + cmd(21)


def test_paths_of_real_changes_are_reported() -> None:
    data = stream(
        cmd(2, (A_PATH, b"snapshot-name")),  # SNAPSHOT names the subvolume, not a path
        cmd(3, (A_PATH, b"o257-7-0")),  # MKFILE under a temporary name
        cmd(9, (A_PATH, b"o257-7-0"), (A_PATH_TO, b"etc/new")),  # RENAME to the real one
        cmd(11, (A_PATH, b"etc/old")),  # UNLINK
        cmd(18, (A_PATH, b"etc/chmodded")),  # CHMOD
        cmd(20, (A_PATH, b"etc")),  # UTIMES only: not a change
    )
    assert changed_paths(data) == {"etc/new", "etc/old", "etc/chmodded"}


def test_not_a_stream() -> None:
    with pytest.raises(ValueError):
        changed_paths(b"garbage")
