"""The slow generic walk (ashcore/treecompare.py), on plain folders: what it names, and that a
path longer than PATH_MAX, at any depth, is walked with a few descriptors."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from ashcore.treecompare import changed_paths


def _tree(top: Path) -> None:
    (top / "etc").mkdir(parents=True)
    for name in ("same", "edited", "mode", "gone", "retyped"):
        (top / "etc" / name).write_text(name)
    (top / "etc/link").symlink_to("same")
    (top / "old/sub").mkdir(parents=True)
    (top / "old/sub/f").write_text("f")


def _descend(top: str, names: list[str]) -> int:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for name in names:
        if not os.path.lexists(f"/proc/self/fd/{fd}/{name}"):
            os.mkdir(name, dir_fd=fd)
        down = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = down
    return fd


def _remove(top: str, names: list[str], leaf: str | None) -> None:
    """Remove what `_descend` made, from the bottom up (pytest's cleanup recurses)."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    for name in names:
        fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    if leaf is not None:
        os.unlink(leaf, dir_fd=fds[-1])
    for name in reversed(names):
        os.close(fds.pop())
        os.rmdir(name, dir_fd=fds[-1])
    os.close(fds.pop())


def test_the_walk_names_what_differs_and_not_what_only_was_touched(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _tree(old)
    _tree(new)
    (new / "etc/edited").write_text("EDITED")
    (new / "etc/mode").chmod(0o600)
    (new / "etc/gone").unlink()
    (new / "etc/retyped").unlink()
    (new / "etc/retyped").mkdir()
    (new / "etc/link").unlink()
    (new / "etc/link").symlink_to("edited")
    (new / "etc/added").write_text("x")
    os.utime(new / "etc/same", (1, 1))  # times only: no change
    (new / "old/sub/f").unlink()
    (new / "old/sub").rmdir()
    (new / "old").rmdir()
    assert changed_paths(str(old), str(new)) == {
        "etc/edited",
        "etc/mode",
        "etc/gone",
        "etc/retyped",
        "etc/link",
        "etc/added",
        "old",
        "old/sub",
        "old/sub/f",
    }
    assert changed_paths(str(old), str(old)) == set()


def test_a_path_longer_than_path_max_at_any_depth_is_walked(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    deep = [f"{i:04d}" for i in range(1500)]  # 7,500 characters, 1,500 folders deep
    shared = deep[:1200]
    for top in (old, new):
        os.close(_descend(str(top), shared))
    fd = _descend(str(new), deep)
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("x")
    os.close(fd)
    before = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (before + 16, hard))  # far fewer than 1,500
    try:
        found = changed_paths(str(old), str(new))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        _remove(str(old), shared, None)
        _remove(str(new), deep, "leaf")
    assert len(os.listdir("/proc/self/fd")) == before  # every descriptor closed
    assert found == {"/".join(deep[: i + 1]) for i in range(1200, 1500)} | {
        "/".join([*deep, "leaf"])
    }
