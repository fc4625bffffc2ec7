"""Atomic writes: write a temporary file, fsync, rename, fsync the directory. And JSON, imported
at its first use: importing `json` costs a hook about 5 ms (it compiles regular expressions),
and a begin without drift needs none."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")


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


def write_new_file(path: str, fill: Callable[[int], T], *, mode: int = 0o644) -> T:
    """Create or replace `path` with what `fill` writes to the descriptor it gets (open for
    reading too), safely in a folder others can write in (/tmp): the temporary file is made
    beside it with O_EXCL|O_NOFOLLOW under a name no one can guess, a symlink at `path` is
    refused, and the rename replaces the name itself, never a file a planted link points to.
    Returns what `fill` returns."""
    import contextlib
    import secrets
    import stat

    from ashcore.errors import UsageError

    folder, name = os.path.split(path)
    dfd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a plain file"
                raise UsageError(
                    f"{path} is {what}: not followed, not replaced",
                    hint="name another file, or remove it first",
                )
        tmp = f".{name[:200]}.{secrets.token_hex(8)}.tmp"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        try:
            result = fill(fd)
            os.fchmod(fd, mode)
            os.fsync(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        finally:
            os.close(fd)
        os.fsync(dfd)
        return result
    finally:
        os.close(dfd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
