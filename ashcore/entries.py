"""Whether a path is the same in two trees: type, mode, owner, link target, content.

What decides drift once the send stream has named the candidates: a file that a manager
rewrote with the same bytes (a reinstall) is not a change.
"""

from __future__ import annotations

import errno
import os
import stat

CHUNK = 1 << 20


def _same_content(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def same_entry(a: str, b: str) -> bool:
    """Whether `a` and `b` are the same; False when that cannot be told (a path longer than
    PATH_MAX: the slow walk that named it compared it already), so no change is missed."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return not os.path.lexists(a) and not os.path.lexists(b)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return False
        raise
    if (sa.st_mode, sa.st_uid, sa.st_gid) != (sb.st_mode, sb.st_uid, sb.st_gid):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode):
        return sa.st_size == sb.st_size and _same_content(a, b)
    if stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
        return sa.st_rdev == sb.st_rdev
    return True
