"""What differs between two read-only trees, found by walking both: the slow generic way,
for when `btrfs send` cannot say (the kernel's send refuses a path longer than PATH_MAX with
ENAMETOOLONG, and any user can make one under a folder they may write).

It names what a send stream names: every path created or removed (each entry of a folder
created or removed too), and every path whose type, mode, owner, link target, device,
content or extended attributes changed; not a change of times only. Each folder is opened
relative to its parent and left through its `..`, so a path of any length and any depth is
walked with four descriptors open; nothing is followed through a symlink.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20


class _Folder:
    """A folder of the walk: its descriptors in the old and the new tree while it is the one
    being walked (None where it is not in that tree), and the subfolders left to walk."""

    __slots__ = ("fds", "ids", "rel", "todo")

    def __init__(self, rel: str, fds: tuple[int | None, int | None]) -> None:
        self.rel = rel
        self.fds = fds
        self.ids = tuple(None if fd is None else _identity(os.fstat(fd)) for fd in fds)
        self.todo: list[tuple[str, bool, bool]] = []  # (name, in old, in new)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _entries(fd: int | None) -> dict[str, os.stat_result]:
    if fd is None:
        return {}
    return {name: os.stat(name, dir_fd=fd, follow_symlinks=False) for name in os.listdir(fd)}


def _xattrs(fd: int) -> dict[str, bytes]:
    try:
        return {name: os.getxattr(fd, name) for name in os.listxattr(fd)}
    except OSError:  # a filesystem without them
        return {}


def _same_content(fa: int, fb: int) -> bool:
    while True:
        ca, cb = os.read(fa, CHUNK), os.read(fb, CHUNK)
        if ca != cb:
            return False
        if not ca:
            return True


def _same_entry(
    fds: tuple[int | None, int | None],
    name: str,
    sa: os.stat_result | None,
    sb: os.stat_result | None,
) -> bool:
    """Whether the entry `name` is in both folders, the same but for times."""
    fa, fb = fds
    if sa is None or sb is None or fa is None or fb is None:
        return False
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return False
    return _same((fa, fb), name, sa, sb)


def _same(fds: tuple[int, int], name: str, sa: os.stat_result, sb: os.stat_result) -> bool:
    untouched = (sa.st_ino, sa.st_size, sa.st_mtime_ns, sa.st_ctime_ns) == (
        sb.st_ino,
        sb.st_size,
        sb.st_mtime_ns,
        sb.st_ctime_ns,
    )
    if (sa.st_mode, sa.st_uid, sa.st_gid) != (sb.st_mode, sb.st_uid, sb.st_gid):
        return False
    if untouched:  # a snapshot keeps inode items as they were: any change sets the ctime
        return True
    mode = sa.st_mode
    if stat.S_ISLNK(mode):
        return os.readlink(name, dir_fd=fds[0]) == os.readlink(name, dir_fd=fds[1])
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return sa.st_rdev == sb.st_rdev
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return True  # a fifo, a socket: nothing but its mode and owner
    flags = _DIR_FLAGS if stat.S_ISDIR(mode) else os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fa = os.open(name, flags, dir_fd=fds[0])
    try:
        fb = os.open(name, flags, dir_fd=fds[1])
        try:
            if _xattrs(fa) != _xattrs(fb):
                return False
            if stat.S_ISDIR(mode):
                return True  # its entries are compared one by one
            return sa.st_size == sb.st_size and _same_content(fa, fb)
        finally:
            os.close(fb)
    finally:
        os.close(fa)


def _compare(folder: _Folder, changed: set[str]) -> None:
    """Name what differs among the entries of `folder`; queue its subfolders."""
    fa, fb = folder.fds
    old, new = _entries(fa), _entries(fb)
    for name in sorted(old.keys() | new.keys(), reverse=True):
        rel = f"{folder.rel}/{name}" if folder.rel else name
        sa, sb = old.get(name), new.get(name)
        dir_a = sa is not None and stat.S_ISDIR(sa.st_mode)
        dir_b = sb is not None and stat.S_ISDIR(sb.st_mode)
        if not _same_entry((fa, fb), name, sa, sb):
            changed.add(rel)
        if dir_a or dir_b:
            folder.todo.append((name, dir_a, dir_b))


def _close(fds: Iterable[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def changed_paths(old: str, new: str) -> set[str]:
    """Paths that differ between the trees at `old` and `new` (time-only changes excluded)."""
    changed: set[str] = set()
    top = _Folder("", (os.open(old, _DIR_FLAGS), os.open(new, _DIR_FLAGS)))
    stack = [top]
    try:
        _compare(top, changed)
        while stack:
            here = stack[-1]
            if here.todo:
                name, in_a, in_b = here.todo.pop()
                fds = (
                    os.open(name, _DIR_FLAGS, dir_fd=here.fds[0]) if in_a else None,
                    os.open(name, _DIR_FLAGS, dir_fd=here.fds[1]) if in_b else None,
                )
                rel = f"{here.rel}/{name}" if here.rel else name
                # Leave `here` through `..` later: any depth takes a few descriptors. A
                # side the subfolder lacks keeps its descriptor: there is no `..` to take.
                _close(mine for mine, theirs in zip(here.fds, fds, strict=True) if theirs)
                here.fds = _pair(
                    mine if theirs is None else None
                    for mine, theirs in zip(here.fds, fds, strict=True)
                )
                child = _Folder(rel, fds)
                stack.append(child)
                _compare(child, changed)
                continue
            if len(stack) > 1:
                parent = stack[-2]
                parent.fds = _pair(
                    mine if mine is not None or ident is None else _up(theirs, ident)
                    for mine, theirs, ident in zip(parent.fds, here.fds, parent.ids, strict=True)
                )
            _close(here.fds)
            here.fds = (None, None)
            stack.pop()
    finally:
        for folder in stack:
            _close(folder.fds)
    return changed


def _pair(fds: Iterable[int | None]) -> tuple[int | None, int | None]:
    a, b = fds
    return a, b


def _up(fd: int | None, ident: tuple[int, int]) -> int:
    """The parent of the folder `fd`, checked to be the folder the walk came from."""
    if fd is None:
        raise OSError("a folder of the walk has no parent")
    up = os.open("..", _DIR_FLAGS, dir_fd=fd)
    if _identity(os.fstat(up)) != ident:
        os.close(up)
        raise OSError(f"a folder moved while it was compared (inode {ident[1]})")
    return up
