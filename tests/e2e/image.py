"""The rig's disk: one sparse btrfs image per rig dir, its top level mounted for one session.

Layout of the top level: `golden/<layer>-<key>` read-only subvolumes (the cache),
`build/` for layers being made, `tests/<n>/` for each test's subvolumes.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tests.e2e.command import RigError, run
from tests.e2e.mounts import assert_nothing_mounted_below, mounts_below, unmount_below

DEFAULT_RIG_DIR = "/var/tmp/ashlayers-rig"
DEFAULT_CACHE_DIR = "/var/cache/ashlayers-rig"
IMAGE_SIZE = "8G"


@dataclass(frozen=True)
class RigPaths:
    dir: Path
    cache: Path

    @classmethod
    def from_env(cls) -> RigPaths:
        return cls(
            dir=Path(os.path.abspath(os.environ.get("ASH_RIG_DIR", DEFAULT_RIG_DIR))),
            cache=Path(os.path.abspath(os.environ.get("ASH_RIG_CACHE", DEFAULT_CACHE_DIR))),
        )

    @property
    def image(self) -> Path:
        return self.dir / "rig.img"

    @property
    def top(self) -> Path:
        return self.dir / "top"

    @property
    def roots(self) -> Path:
        return self.dir / "roots"


def lock_file(
    path: Path, timeout: float, what: str, on_wait: Callable[[str], None] | None = None
) -> int:
    """Take an exclusive flock on path, waiting up to timeout seconds; return the fd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError as exc:
            if on_wait and not waiting:
                on_wait(f"waiting for {what}, which another run holds ({path})")
                waiting = True
            if time.monotonic() > deadline:
                os.close(fd)
                raise RigError(
                    f"{what} is locked by another run ({path}) for {timeout:.0f} s"
                ) from exc
            time.sleep(0.5)


def unlock_file(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class Image:
    """The sparse image file of one rig dir and the session's mount of its top level."""

    def __init__(self, paths: RigPaths, say: Callable[[str], None] | None = None) -> None:
        self.paths = paths
        self.say = say
        self._lock: int | None = None

    def attach(self) -> None:
        """Lock the rig dir, create the image if needed, mount it, clear leftovers."""
        self._lock = lock_file(
            self.paths.dir / "lock", 1800, f"the rig dir {self.paths.dir}", self.say
        )
        unmount_below(self.paths.dir)  # leftovers of a run killed in the host namespace
        if not self.paths.image.exists() or not self._mount():
            if self.paths.image.exists() and self.say:
                self.say(f"cannot mount {self.paths.image}: making a new image")
            self._create()
            if not self._mount():
                raise RigError(f"cannot mount the new image {self.paths.image}")
        top = self.paths.top
        for name in ("golden", "build", "tests"):
            (top / name).mkdir(exist_ok=True)
        for leftover in [*(top / "build").iterdir(), *(top / "tests").iterdir()]:
            delete_tree(leftover, self.paths.top)
        self.paths.roots.mkdir(exist_ok=True)
        for mount_point in self.paths.roots.iterdir():  # empty, as nothing is mounted
            mount_point.rmdir()

    def detach(self) -> None:
        """Unmount all of the rig dir (roots, then the top level); the image file stays."""
        try:
            unmount_below(self.paths.dir)
        finally:
            if self._lock is not None:
                unlock_file(self._lock)
                self._lock = None

    def _create(self) -> None:
        self.paths.image.unlink(missing_ok=True)
        run(["truncate", "-s", IMAGE_SIZE, str(self.paths.image)])
        run(["mkfs.btrfs", "-q", "-L", "ashlayers-rig", str(self.paths.image)])

    def _mount(self) -> bool:
        self.paths.top.mkdir(parents=True, exist_ok=True)
        proc = run(
            ["mount", "-o", "loop,compress=zstd:1", str(self.paths.image), str(self.paths.top)],
            check=False,
        )
        return proc.returncode == 0 and bool(mounts_below(self.paths.top))


def _btrfsutil() -> ModuleType:
    """libbtrfsutil's Python binding (python3-btrfsutil): the system interpreter's module."""
    try:
        import btrfsutil
    except ImportError as exc:
        raise RigError(
            f"python3-btrfsutil is not importable by {sys.executable}: run the tests with "
            ".venv/bin/python (see tests/host-deps.sh) or /usr/bin/python3"
        ) from exc
    module: ModuleType = btrfsutil
    return module


def create_subvolume(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _btrfsutil().create_subvolume(str(path))


def snapshot(source: Path, target: Path, *, read_only: bool = False) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _btrfsutil().create_snapshot(str(source), str(target), read_only=read_only)


def set_read_only(path: Path, read_only: bool = True) -> None:
    _btrfsutil().set_subvolume_read_only(str(path), read_only)


def is_subvolume(path: Path) -> bool:
    btrfsutil = _btrfsutil()
    try:
        return bool(btrfsutil.is_subvolume(str(path)))
    except btrfsutil.BtrfsUtilError:
        return False


def is_read_only_subvolume(path: Path) -> bool:
    return is_subvolume(path) and bool(_btrfsutil().get_subvolume_read_only(str(path)))


def delete_tree(path: Path, top: Path) -> None:
    """Delete path (a subvolume or a folder holding some) inside the image's top level.

    Refuses when path is not below top or when anything is mounted below it; subvolumes are
    deleted with their nested subvolumes, the remaining folders with an rm that stays on one
    file system.
    """
    path = Path(os.path.abspath(path))
    if top not in path.parents:
        raise RigError(f"refusing to delete {path}: not inside the rig image at {top}")
    if not path.exists() and not path.is_symlink():
        return
    assert_nothing_mounted_below(path)
    _delete_subvolumes(path)
    if path.exists():
        run(["rm", "-rf", "--one-file-system", "--", str(path)])


def _delete_subvolumes(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        return
    if is_subvolume(path):
        if is_read_only_subvolume(path):
            set_read_only(path, False)
        _btrfsutil().delete_subvolume(str(path), recursive=True)
        return
    for child in path.iterdir():
        _delete_subvolumes(child)
