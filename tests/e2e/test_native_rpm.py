"""The RPM package (ashpkg/rpm/ashlayers.spec): built from the tree with rpmbuild in a root
of the rig, installed with `dnf install ./...rpm`; `ashctl setup` then finds its hooks in
place and dnf5 and dnf runs make layers; reinstall and upgrade keep it working; removal
leaves no active hook and working managers.

The rig is Debian: the rpmdb does not know what dpkg installed, so rpmbuild runs with
--nodeps and a stub rpm provides what the package requires (rpmlint: not run, see README).
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
    last_layer_name,
    layers,
)
from tests.e2e.rig import Rig
from tests.e2e.root import Root

pytestmark = pytest.mark.e2e

RPM = "ashlayers-0.1.0-{rel}.noarch.rpm"
STUB_RPM = "ashtest-debian-bridge-1.0-1.noarch.rpm"
RPMBUILD = (
    "rpmbuild -bb --nodeps --define '_topdir /build/rpmbuild' --define '_ashsrc /build/ashlayers'"
    " --define '_ashrelease {rel}' /build/ashlayers/ashpkg/rpm/ashlayers.spec >&2"
)
LISTING = ["rpm", "-ql", "ashlayers"]


def _stub_spec(provides: list[str]) -> str:
    lines = "".join(f"Provides: {p}\n" for p in provides)
    return (
        "Name: ashtest-debian-bridge\nVersion: 1.0\nRelease: 1\nBuildArch: noarch\n"
        "Summary: What dpkg installed, told to the rpmdb (test rig)\nLicense: MIT\n"
        f"{lines}%description\nWhat dpkg installed.\n%files\n"
    )


@pytest.fixture(scope="module")
def rpms(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("rpm")
    root = rig.new_root()
    try:
        drop_pip_install(root)
        copy_source(root, "/build/ashlayers")
        for rel in (1, 2):
            root.run(RPMBUILD.format(rel=rel), timeout=600)
        built = root.path / "build/rpmbuild/RPMS/noarch"
        requires = root.run(["rpm", "-qpR", f"/build/rpmbuild/RPMS/noarch/{RPM.format(rel=1)}"])
        provides = sorted(
            {r.split()[0] for r in requires.stdout.splitlines() if not r.startswith("rpmlib(")}
            - {"/bin/sh"}  # the rig's ashtest-binsh has it
        )
        (root.path / "build/bridge.spec").write_text(_stub_spec(provides))
        root.run("rpmbuild -bb --define '_topdir /build/rpmbuild' /build/bridge.spec >&2")
        for name in (RPM.format(rel=1), RPM.format(rel=2), STUB_RPM):
            shutil.copy2(built / name, out)
    finally:
        root.close()
    yield out


@pytest.fixture
def packaged(rig: Rig, rpms: Path) -> Iterator[Root]:
    root = rig.new_root()
    try:
        drop_pip_install(root)
        for built in rpms.iterdir():
            shutil.copy2(built, root.path / "srv" / built.name)
        root.run(["dnf5", "install", "-y", f"/srv/{STUB_RPM}", f"/srv/{RPM.format(rel=1)}"])
        yield root
    finally:
        root.close()


def test_installed_with_dnf_it_makes_layers(packaged: Root) -> None:
    for shipped in (
        "usr/libexec/ashlayers/dnf5-hook",
        "etc/dnf/libdnf5-plugins/actions.d/ashlayers.actions",
        "usr/lib/python3/dist-packages/dnf-plugins/ashlayers.py",
        "usr/lib/systemd/system/ashlayers-prune.timer",
        "usr/share/bash-completion/completions/ashctl",
        "usr/share/zsh/site-functions/_ashctl",
    ):
        assert (packaged.path / shipped).exists(), shipped
    assert list((packaged.path / "usr/share/man/man8").glob("ashctl.8*"))
    assert_setup_writes_no_hook(packaged, LISTING)
    packaged.run(["dnf5", "install", "-y", "ashtest-v"])
    assert layers(packaged)[-1]["manager"] == "dnf5"
    packaged.run(["dnf", "remove", "-y", "ashtest-v"])
    assert layers(packaged)[-1]["manager"] == "dnf4"
    packaged.run(["dnf5", "reinstall", "-y", f"/srv/{RPM.format(rel=1)}"])
    packaged.run(["dnf5", "install", "-y", f"/srv/{RPM.format(rel=2)}"])  # upgrade
    assert packaged.run(["rpm", "-q", "ashlayers"]).stdout.startswith("ashlayers-0.1.0-2")
    assert_setup_writes_no_hook(packaged, LISTING)
    packaged.run(["dnf5", "install", "-y", "ashtest-b"])
    assert last_layer_name(packaged) == "dnf5 install ashtest-b"


def test_removal_leaves_no_hook_and_working_managers(packaged: Root) -> None:
    packaged.run(["ashctl", "setup"])
    packaged.run(["dnf5", "install", "-y", "ashtest-v"])
    packaged.run(["dnf5", "remove", "-y", "ashlayers"])
    assert_no_hook_active(packaged)
    for argv in (
        ["dnf5", "remove", "-y", "ashtest-v"],
        ["dnf", "install", "-y", "ashtest-v"],
        ["dnf", "remove", "-y", "ashtest-v"],
        ["apt-get", "install", "-y", "ashtest-a"],
        ["pacman", "-S", "--noconfirm", "ashtest-v"],
    ):
        done = packaged.run(argv)
        assert "ashlayers" not in done.stdout + done.stderr, f"{argv}: {done.stderr}"
