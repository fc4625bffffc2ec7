"""What the native-package tests share: a root without the rig's pip install, the source tree
copied in, build tools from the Debian mirror (their .debs cached in the rig's shared cache),
and the checks of the packages' contract (a layer per operation; after removal, no hook).

The build tools (debhelper, dh-python, lintian, ...) are installed at test time, not in the
rig's base: a new base package list changes the base key, and the shared cache keeps one base
tarball, so it would rebuild the base of every other rig dir on this machine.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from tests.e2e.base import mirror
from tests.e2e.image import RigPaths
from tests.e2e.mounts import mount
from tests.e2e.rig import PROJECT
from tests.e2e.root import Root

SOURCE_FILES = ("pyproject.toml", "README.md", "ashcore", "plugins", "ashpkg", "debian")
KEYRING = "usr/share/keyrings/debian-archive-keyring.gpg"


def drop_pip_install(root: Root) -> None:
    """The rig's golden has the project pip-installed: the package brings its own copy."""
    root.run(["python3", "-m", "pip", "uninstall", "-y", "--break-system-packages", "ashlayers"])
    assert root.run(["sh", "-c", "command -v ashctl"], check=False).returncode != 0


def copy_source(root: Root, dest: str) -> Path:
    """The project's source tree at `dest` inside the root; returns its host path."""
    target = root.path / dest.lstrip("/")
    target.mkdir(parents=True)
    for name in SOURCE_FILES:
        path = PROJECT / name
        if path.is_dir():
            shutil.copytree(
                path,
                target / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build"),
            )
        else:
            shutil.copy2(path, target / name)
    return target


def install_from_mirror(root: Root, packages: list[str]) -> None:
    """apt-get install from the Debian mirror, then the root knows only the test repo again.
    Downloaded .debs are kept in the rig's cache (a bind mount on apt's archives)."""
    archives = RigPaths.from_env().cache / "native-debs"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    inside = root.path / "var/cache/apt/archives"
    inside.mkdir(parents=True, exist_ok=True)
    mount(str(archives), inside, "bind")
    signed = f"signed-by=/{KEYRING}" if (root.path / KEYRING).exists() else "trusted=yes"
    source = root.path / "etc/apt/sources.list.d/mirror.list"
    source.write_text(f"deb [{signed}] {mirror()} sid main\n")
    resolv = root.path / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)  # the golden has none (base.py)
    options = ["-o", "Acquire::Check-Valid-Until=false", "-o", "Acquire::Retries=3"]
    try:
        update = root.run(["apt-get", *options, "update", "-q"], timeout=600)
        if "W:" in update.stderr or "E:" in update.stderr:
            raise AssertionError(f"apt-get update from {mirror()}:\n{update.stderr}")
        root.run(
            ["apt-get", *options, "install", "-y", "-q", "--no-install-recommends", *packages],
            timeout=1200,
        )
    finally:
        source.unlink()
        resolv.unlink()
        root.run(["apt-get", "update", "-qq"])


def layers(root: Root) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = root.ashctl_json("list")
    return found


def last_layer_name(root: Root) -> str:
    return str(layers(root)[-1]["name"])


HOOK_ENTRIES = {
    "apt": ("usr/libexec/ashlayers/apt-hook",),
    "dnf": (
        "usr/libexec/ashlayers/dnf5-hook",
        "usr/lib/python3/dist-packages/dnf-plugins/ashlayers.py",
    ),
    "pacman": (
        "usr/libexec/ashlayers/pacman-hook",
        "usr/share/libalpm/hooks/00-ashlayers-pre.hook",
        "usr/share/libalpm/hooks/zz-ashlayers-post.hook",
        "etc/pacman.d/hooks/00-ashlayers-pre.hook",
        "etc/pacman.d/hooks/zz-ashlayers-post.hook",
    ),
}


def assert_no_hook_active(root: Root, managers: tuple[str, ...] = ("apt", "dnf", "pacman")) -> None:
    """No launcher, no alpm hook, no dnf plugin of the package's managers, no ash-commit: what
    may stay (apt's and dnf5's conffiles) names a launcher that is gone, and does nothing."""
    entries = ["usr/libexec/ashlayers/ash-commit"]
    for manager in managers:
        entries += HOOK_ENTRIES[manager]
    left = [p for p in entries if (root.path / p).exists()]
    assert not left, f"hook files left after removal: {left}"


def digests(root: Root, listing: list[str]) -> dict[str, str]:
    """sha256 of each regular file a package owns (`listing`: its manager's file list)."""
    found = {}
    for line in root.run(listing).stdout.splitlines():
        path = root.path / line.strip().lstrip("/")
        if line.strip() and path.is_file() and not path.is_symlink():
            found[line.strip()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_setup_writes_no_hook(root: Root, listing: list[str]) -> str:
    """`ashctl setup` on a packaged root: every hook file is the package's, byte for byte;
    no copy in the admin's folders. Returns setup's report."""
    before = digests(root, listing)
    report = root.run(["ashctl", "setup"]).stdout
    after = digests(root, listing)
    assert after == before, f"setup changed the package's files:\n{report}"
    for copy in (
        "etc/pacman.d/hooks/00-ashlayers-pre.hook",
        "etc/systemd/system/ashlayers-prune.timer",
    ):
        assert not (root.path / copy).exists(), f"setup wrote /{copy}"
    return report
