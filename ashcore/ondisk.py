"""Atomic writes: write a temporary file, fsync, rename, fsync the directory. And JSON, imported
at its first use: importing `json` costs a hook about 5 ms (it compiles regular expressions),
and a begin without drift needs none."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def write_atomic(path: str, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` by `data`: a reader sees the old file or the new one, never a torn one.

    durable=False skips the fsyncs: for data the next run can tell is missing or stale and
    rebuild (a layer's manifest names its snapshot's uuid), where a power loss may lose the
    file but the fsyncs would cost every hook milliseconds.
    """
    directory = os.path.dirname(path) or "."
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    if not durable:
        return
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def dumps(value: Any, **options: Any) -> str:
    import json

    return json.dumps(value, **options)


def loads(text: str | bytes) -> Any:
    import json

    return json.loads(text)


def write_json(path: str, value: Any, *, durable: bool = True) -> None:
    data = dumps(value, sort_keys=True, separators=(",", ":")).encode()
    write_atomic(path, data, durable=durable)


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when there is none."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_json(path: str) -> Any:
    """The parsed file, or None when it is missing or torn."""
    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except (OSError, ValueError):
        return None
