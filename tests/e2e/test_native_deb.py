"""The Debian package (debian/): built from the tree with dpkg-buildpackage in a root of the rig,
checked by lintian, installed with apt; `ashctl setup` then finds its hooks in place, and apt,
pacman and dnf5 runs make layers; reinstall and upgrade change nothing; removal leaves no
active hook and working managers; purge takes the config and keeps the layers.
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
    layers,
)
from tests.e2e.rig import Rig
from tests.e2e.root import Root

pytestmark = pytest.mark.e2e

BUILD_TOOLS = [
    "build-essential",
    "debhelper",
    "dh-python",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-setuptools",
    "lintian",
]
DEB = "ashlayers_0.1.0_all.deb"
LISTING = ["dpkg-query", "-L", "ashlayers"]


@pytest.fixture(scope="module")
def deb(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The .deb, built once for the module; lintian's findings are in its `.lintian` file."""
    out = tmp_path_factory.mktemp("deb")
    root = rig.new_root()
    try:
        drop_pip_install(root)
        install_from_mirror(root, BUILD_TOOLS)
        copy_source(root, "/build/ashlayers")
        root.run("cd /build/ashlayers && dpkg-buildpackage -us -uc -b", timeout=900)
        shutil.copy2(root.path / "build" / DEB, out / DEB)
        lint = root.run(
            ["lintian", "--fail-on", "error", "--info", f"/build/{DEB}"],
            check=False,
            timeout=600,
        )
        (out / f"{DEB}.lintian").write_text(f"rc {lint.returncode}\n{lint.stdout}{lint.stderr}")
    finally:
        root.close()
    yield out / DEB


@pytest.fixture
def packaged(rig: Rig, deb: Path) -> Iterator[Root]:
    """A fresh root with the .deb installed by apt (no pip install), `ashctl setup` not run."""
    root = rig.new_root()
    try:
        drop_pip_install(root)
        shutil.copy2(deb, root.path / "srv" / DEB)
        root.run(["apt-get", "install", "-y", f"/srv/{DEB}"])
        yield root
    finally:
        root.close()


def test_lintian_finds_no_error(deb: Path) -> None:
    report = deb.with_name(f"{DEB}.lintian").read_text()
    assert report.startswith("rc 0\n"), report
    assert "\nE: " not in report, report
    print(report)  # the warnings, for the test log (pytest -s)


def test_the_package_ships_hooks_pages_completion_and_units(packaged: Root) -> None:
    path = packaged.path
    for shipped in (
        "usr/bin/ashctl",
        "usr/libexec/ashlayers/apt-hook",
        "usr/libexec/ashlayers/ash-commit",
        "etc/apt/apt.conf.d/80ashlayers",
        "etc/dpkg/dpkg.cfg.d/ashlayers",
        "usr/share/libalpm/hooks/00-ashlayers-pre.hook",
        "etc/dnf/libdnf5-plugins/actions.d/ashlayers.actions",
        "usr/lib/systemd/system/ashlayers-prune.timer",
        "usr/share/man/man8/ashctl.8.gz",
        "usr/share/man/man5/ash.toml.5.gz",
        "usr/share/man/man7/ashlayers.7.gz",
        "usr/share/bash-completion/completions/ashctl",
        "usr/share/zsh/vendor-completions/_ashctl",
    ):
        assert (path / shipped).exists(), shipped
    conffiles = (path / "var/lib/dpkg/info/ashlayers.conffiles").read_text().split()
    assert "/etc/apt/apt.conf.d/80ashlayers" in conffiles
    assert not (path / "etc/ash/ash.toml").exists()  # setup's: the hooks do nothing until then
    done = packaged.run(["apt-get", "install", "-y", "ashtest-a"])  # not set up: no layer
    assert "ashlayers" not in done.stdout + done.stderr


def test_setup_then_each_manager_makes_a_layer(packaged: Root) -> None:
    assert_setup_writes_no_hook(packaged, LISTING)
    assert last_layer_name(packaged) == "base"
    packaged.run(["apt-get", "install", "-y", "ashtest-a"])
    assert last_layer_name(packaged) == "apt-get install ashtest-a"
    packaged.run(["pacman", "-S", "--noconfirm", "ashtest-v"])
    assert last_layer_name(packaged) == "pacman -S ashtest-v"
    packaged.run(["pacman", "-R", "--noconfirm", "ashtest-v"])
    packaged.run(["dnf5", "install", "-y", "ashtest-v"])
    assert layers(packaged)[-1]["manager"] == "dnf5"
    assert_setup_writes_no_hook(packaged, LISTING)  # again: idempotent


def test_reinstall_and_upgrade_keep_everything_working(packaged: Root) -> None:
    packaged.run(["ashctl", "setup"])
    toml = packaged.path / "etc/ash/ash.toml"
    toml.write_text(toml.read_text() + "lock_timeout = 60\n")
    packaged.run(["apt-get", "install", "-y", "--reinstall", f"/srv/{DEB}"])
    # An upgrade: the same package as version 0.1.0+1 (dpkg-deb, repacked).
    packaged.run(
        "set -e; cd /srv; rm -rf up; dpkg-deb -R ashlayers_0.1.0_all.deb up;"
        " sed -i 's/^Version: .*/Version: 0.1.0+1/' up/DEBIAN/control;"
        " dpkg-deb --root-owner-group -b up ashlayers_0.1.0+1_all.deb >/dev/null; rm -rf up"
    )
    packaged.run(["apt-get", "install", "-y", "/srv/ashlayers_0.1.0+1_all.deb"])
    assert "lock_timeout = 60" in toml.read_text()  # the admin's settings are kept
    assert_setup_writes_no_hook(packaged, LISTING)
    packaged.run(["apt-get", "install", "-y", "ashtest-b"])
    assert last_layer_name(packaged) == "apt-get install ashtest-b"


def test_removal_leaves_no_hook_and_working_managers(packaged: Root) -> None:
    packaged.run(["ashctl", "setup"])
    packaged.run(["apt-get", "install", "-y", "ashtest-a"])
    before = {layer["id"] for layer in layers(packaged)}  # ashctl waits for the helper
    packaged.run(["apt-get", "remove", "-y", "ashlayers"])
    assert_no_hook_active(packaged)
    for argv in (
        ["apt-get", "install", "-y", "ashtest-b"],
        ["dpkg", "-r", "ashtest-b"],
        ["apt-get", "remove", "-y", "ashtest-a"],
        ["pacman", "-S", "--noconfirm", "ashtest-v"],
        ["pacman", "-R", "--noconfirm", "ashtest-v"],
        ["dnf5", "install", "-y", "ashtest-v"],
        ["dnf", "remove", "-y", "ashtest-v"],
    ):
        done = packaged.run(argv)
        assert "ashlayers" not in done.stdout + done.stderr, f"{argv}: {done.stderr}"
    store = packaged.path / ".ash/layers"
    after = {int(p.stem) for p in store.glob("*.json") if p.stem.isdigit()}
    assert len(after - before) <= 1, f"layers after the removal: {sorted(after - before)}"
    packaged.run(["apt-get", "purge", "-y", "ashlayers"])
    assert not (packaged.path / "etc/ash").exists()
    assert not (packaged.path / "etc/apt/apt.conf.d/80ashlayers").exists()
    assert before <= {int(p.stem) for p in store.glob("*.json") if p.stem.isdigit()}
    # Installed again, it goes on with the same store: the operation that removed it (its
    # post hook was gone) is closed, not lost.
    packaged.run(["apt-get", "install", "-y", f"/srv/{DEB}"])
    packaged.run(["ashctl", "setup"])
    packaged.run(["apt-get", "install", "-y", "ashtest-a"])
    found = layers(packaged)
    assert found[-1]["name"] == "apt-get install ashtest-a"
    assert before < {layer["id"] for layer in found}
    print([(layer["id"], layer["name"], layer["status"]) for layer in found])
