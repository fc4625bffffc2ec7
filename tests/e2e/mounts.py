"""Mounts of the rig: what is mounted where, and taking it all down again.

Everything the rig deletes is first checked here: nothing may be mounted below it, because a
recursive delete through the chroot's bind of /dev would delete the host's device nodes.
"""

from __future__ import annotations

import ctypes
import os
import re
import warnings
from pathlib import Path

from tests.e2e.command import RigError, run

CLONE_NEWNS = 0x00020000
_OCTAL = re.compile(r"\\([0-7]{3})")
_private = False


def mount_points() -> list[Path]:
    """Mount points of this process, in mount order (/proc/self/mountinfo)."""
    points: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            field = line.split()[4]
            points.append(Path(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)))
    return points


def mounts_below(path: Path) -> list[Path]:
    """Mount points at or below path, the most recent first."""
    path = Path(os.path.abspath(path))
    return [p for p in reversed(mount_points()) if p == path or path in p.parents]


def unmount_below(path: Path) -> None:
    """Unmount everything at or below path, deepest and newest first; verify it is all gone."""
    for _ in range(4):
        points = mounts_below(path)
        if not points:
            return
        for point in sorted(points, key=lambda p: len(p.parts), reverse=True):
            if run(["umount", str(point)], check=False).returncode != 0:
                run(["umount", "--lazy", str(point)], check=False)
    left = mounts_below(path)
    if left:
        raise RigError(f"still mounted below {path}: {', '.join(map(str, left))}")


def assert_nothing_mounted_below(path: Path) -> None:
    """Refuse to go on (e.g. to delete) while anything is mounted at or below path."""
    left = mounts_below(path)
    if left:
        raise RigError(f"refusing to delete {path}: still mounted: {', '.join(map(str, left))}")


def mount(source: str, target: Path, *options: str, fstype: str | None = None) -> None:
    argv = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    run([*argv, source, str(target)])


def enter_private_namespace() -> None:
    """Move this process into a mount namespace of its own, with private propagation.

    Every mount the rig makes is then invisible to the host and disappears with the process,
    even when it is killed; a loop device mounted with `-o loop` detaches with it.
    """
    global _private
    if _private:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        # e.g. EINVAL in a process with threads: go on in the host's namespace, where the
        # fixtures still unmount everything they mounted (only a kill -9 would leave mounts)
        problem = os.strerror(ctypes.get_errno())
        warnings.warn(f"rig: no private mount namespace (unshare: {problem})", stacklevel=2)
        return
    run(["mount", "--make-rprivate", "/"])
    _private = True
