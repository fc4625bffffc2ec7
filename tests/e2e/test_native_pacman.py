"""The Arch package (ashpkg/arch/PKGBUILD): built from the tree with makepkg in a root of the
rig, installed with `pacman -U`; `ashctl setup` then finds its hooks in place and pacman runs
make layers; reinstall and upgrade keep it working; removal leaves no active hook.

The rig is Debian: pacman's database does not know Debian's python, btrfs-progs or pyalpm,
so makepkg runs with --nodeps and a stub package provides them to pacman (namcap is not in
Debian: not run).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.native import (
    assert_no_hook_active,
    assert_setup_writes_no_hook,
    copy_source,
    drop_pip_install,
    install_from_mirror,
    last_layer_name,
)
from tests.e2e.rig import Rig
from tests.e2e.root import Root

pytestmark = pytest.mark.e2e

BUILD_TOOLS = ["python3-build", "python3-installer", "python3-wheel", "fakeroot"]
PKG = "ashlayers-0.1.0-{rel}-any.pkg.tar.zst"
STUB = """pkgname=ashtest-debian-python
pkgver=1.0
pkgrel=1
pkgdesc='What dpkg installed, told to pacman (test rig)'
arch=('any')
license=('MIT')
provides=('python' 'btrfs-progs' 'pyalpm')
"""
LISTING = ["pacman", "-Qlq", "ashlayers"]
MAKEPKG = (
    "cd {dir} && runuser -u builder -- env PKGDEST=/build/out PKGEXT=.pkg.tar.zst"
    " makepkg --nodeps --noconfirm --skipinteg >&2"
)


@pytest.fixture(scope="module")
def pkgs(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package (pkgrel 1 and 2, for an upgrade) and the stub, built once."""
    out = tmp_path_factory.mktemp("pacman")
    root = rig.new_root()
    try:
        drop_pip_install(root)
        install_from_mirror(root, BUILD_TOOLS)
        copy_source(root, "/build/ashlayers")
        stub = root.path / "build/stub"
        stub.mkdir()
        (stub / "PKGBUILD").write_text(STUB)
        root.run("useradd -m builder && mkdir /build/out && chown -R builder /build")
        arch = "/build/ashlayers/ashpkg/arch"
        root.run(MAKEPKG.format(dir=arch), timeout=600)
        root.run(f"sed -i 's/^pkgrel=1$/pkgrel=2/' {arch}/PKGBUILD && " + MAKEPKG.format(dir=arch))
        root.run(MAKEPKG.format(dir="/build/stub"))
        for built in (root.path / "build/out").iterdir():
            shutil.copy2(built, out)
        assert {PKG.format(rel=1), PKG.format(rel=2)} <= {p.name for p in out.iterdir()}
    finally:
        root.close()
    yield out


@pytest.fixture
def packaged(rig: Rig, pkgs: Path) -> Iterator[Root]:
    root = rig.new_root()
    try:
        drop_pip_install(root)
        for built in pkgs.iterdir():
            shutil.copy2(built, root.path / "srv" / built.name)
        root.run(
            [
                "pacman",
                "-U",
                "--noconfirm",
                "/srv/ashtest-debian-python-1.0-1-any.pkg.tar.zst",
                f"/srv/{PKG.format(rel=1)}",
            ]
        )
        yield root
    finally:
        root.close()


def test_installed_with_pacman_it_makes_layers(packaged: Root) -> None:
    path = packaged.path
    for shipped in (
        "usr/libexec/ashlayers/pacman-hook",
        "usr/share/libalpm/hooks/00-ashlayers-pre.hook",
        "usr/lib/systemd/system/ashlayers-prune.timer",
        "usr/share/man/man8/ashctl.8.gz",
        "usr/share/bash-completion/completions/ashctl",
        "usr/share/zsh/site-functions/_ashctl",
    ):
        assert (path / shipped).exists(), shipped
    assert packaged.run(["sh", "-c", "command -v ashctl"]).stdout.strip()
    assert_setup_writes_no_hook(packaged, LISTING)
    packaged.run(["pacman", "-S", "--noconfirm", "ashtest-a"])
    assert last_layer_name(packaged) == "pacman -S ashtest-a"
    packaged.run(["pacman", "-U", "--noconfirm", f"/srv/{PKG.format(rel=1)}"])  # reinstall
    packaged.run(["pacman", "-U", "--noconfirm", f"/srv/{PKG.format(rel=2)}"])  # upgrade
    assert packaged.run(["pacman", "-Q", "ashlayers"]).stdout.strip() == "ashlayers 0.1.0-2"
    assert_setup_writes_no_hook(packaged, LISTING)
    packaged.run(["pacman", "-R", "--noconfirm", "ashtest-a"])
    assert last_layer_name(packaged) == "pacman -R ashtest-a"


def test_removal_leaves_no_hook_and_a_working_pacman(packaged: Root) -> None:
    packaged.run(["ashctl", "setup"])
    packaged.run(["pacman", "-S", "--noconfirm", "ashtest-a"])
    packaged.run(["pacman", "-R", "--noconfirm", "ashlayers"])
    assert_no_hook_active(packaged)
    assert (packaged.path / "etc/ash/ash.toml").exists()  # the settings stay, as .pacsave would
    for argv in (
        ["pacman", "-S", "--noconfirm", "ashtest-v"],
        ["pacman", "-R", "--noconfirm", "ashtest-v"],
        ["apt-get", "install", "-y", "ashtest-b"],
        ["dnf5", "install", "-y", "ashtest-v"],
        ["dnf", "remove", "-y", "ashtest-v"],
    ):
        done = packaged.run(argv)
        assert "ashlayers" not in done.stdout + done.stderr, f"{argv}: {done.stderr}"
