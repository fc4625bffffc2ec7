"""The btrfs tier: each test gets its own sparse image, mkfs.btrfs, loop mount, teardown.

The root under test is the subvolume `@root` mounted at `<tmp>/root` (as `/` is on a real
system); `ashctl setup` puts the store beside it as `@ash`, mounted at `<tmp>/root/.ash`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.btrfs


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def mounted_below(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    return [t for t in targets if t == prefix or t.startswith(prefix + "/")]


def host_folder(store: Path) -> Path:
    """Where the store at `store` mounts its stages and temporary mounts on the host: named
    by the store subvolume's uuid (ashcore/stage.py)."""
    import btrfsutil

    return Path("/run/ashlayers") / btrfsutil.subvolume_info(str(store)).uuid.hex()


def left_on_host(store: Path) -> list[str]:
    """What the store left in its host folder (nothing, after every command)."""
    folder = host_folder(store)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@dataclass
class Image:
    dir: Path
    device: str
    top: Path  # the top level (subvolid 5)
    root: Path  # @root, the target root

    def ashctl(
        self,
        *args: str,
        check: bool = False,
        env: dict[str, str] | None = None,
        root: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ashcore.cli", "--root", str(root or self.root), *args]
        result = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, **(env or {})}
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> object:
        import json

        return json.loads(self.ashctl(*args, "--json", check=True).stdout)


def make_image(tmp: Path, size: str = "512M") -> Image:
    if os.geteuid() != 0:
        pytest.skip("the btrfs tier needs root (loop devices, mount)")
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("mkfs.btrfs is missing: install btrfs-progs (tests/host-deps.sh)")
    img = tmp / "fs.img"
    with open(img, "wb") as f:
        f.truncate({"M": 1 << 20, "G": 1 << 30}[size[-1]] * int(size[:-1]))
    sh("mkfs.btrfs", "-q", "-f", str(img))
    device = sh("losetup", "--find", "--show", str(img))
    top, root = tmp / "top", tmp / "root"
    top.mkdir()
    root.mkdir()
    sh("mount", device, str(top))
    sh("btrfs", "subvolume", "create", str(top / "@root"))
    (top / "@root" / "etc").mkdir()
    # The root's own btrfs-progs, which its hooks run (setup checks): the host's, linked.
    (top / "@root" / "usr/sbin").mkdir(parents=True)
    (top / "@root" / "usr/sbin/btrfs").symlink_to(shutil.which("btrfs") or "/usr/bin/btrfs")
    sh("mount", "-o", "subvol=@root", device, str(root))
    return Image(tmp, device, top, root)


def destroy_image(image: Image) -> None:
    for target in sorted(mounted_below(image.dir), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)
    subprocess.run(["losetup", "-d", image.device], check=False)
    assert not mounted_below(image.dir), "mounts left behind"
    (image.dir / "fs.img").unlink(missing_ok=True)


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Image]:
    img = make_image(tmp_path)
    try:
        yield img
    finally:
        destroy_image(img)


@pytest.fixture
def ready(image: Image) -> Image:
    """An image whose root has been set up: store mounted, base layer 1."""
    image.ashctl("setup", check=True)
    return image
