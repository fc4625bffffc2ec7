"""Smoke tests of the rig itself: a plain install and removal with each package manager.

They test the rig, not the plugins: with the plugins set up (`root`) or not (`bare_root`), a
plain command must succeed and the manager's own database must show it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.command import RigError
from tests.e2e.image import delete_tree
from tests.e2e.mounts import mount, mounts_below, unmount_below
from tests.e2e.rig import Rig
from tests.e2e.root import Root

pytestmark = pytest.mark.e2e

ROOTS = ["root", "bare_root"]


@pytest.fixture(params=ROOTS)
def any_root(request: pytest.FixtureRequest) -> Root:
    root: Root = request.getfixturevalue(request.param)
    return root


def test_apt_install_and_remove(any_root: Root) -> None:
    any_root.run(["apt-get", "install", "-y", "ashtest-b"])
    shown = any_root.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\\n", "ashtest-a", "ashtest-b"]
    )
    assert shown.stdout.splitlines() == [
        "ashtest-a 1.0 install ok installed",
        "ashtest-b 1.0 install ok installed",
    ]
    assert (any_root.path / "usr/share/ashtest/b").read_text() == "1.0\n"
    any_root.run(["apt-get", "remove", "-y", "ashtest-b"])
    gone = any_root.run(["dpkg-query", "-W", "-f", "${Status}", "ashtest-b"], check=False)
    assert "installed" not in gone.stdout.replace("not-installed", "")


@pytest.mark.parametrize("dnf", ["dnf5", "dnf"])
def test_dnf_install_and_remove(any_root: Root, dnf: str) -> None:
    any_root.run([dnf, "install", "-y", "ashtest-b"])
    assert any_root.run(["rpm", "-q", "ashtest-a", "ashtest-b"]).stdout.split() == [
        "ashtest-a-1.0-1.noarch",
        "ashtest-b-1.0-1.noarch",
    ]
    any_root.run([dnf, "remove", "-y", "ashtest-b"])
    assert any_root.run(["rpm", "-q", "ashtest-b"], check=False).returncode != 0


def test_pacman_install_and_remove(any_root: Root) -> None:
    any_root.run(["pacman", "-S", "--noconfirm", "ashtest-b"])
    assert any_root.run(["pacman", "-Q", "ashtest-a", "ashtest-b"]).stdout.splitlines() == [
        "ashtest-a 1.0-1",
        "ashtest-b 1.0-1",
    ]
    any_root.run(["pacman", "-R", "--noconfirm", "ashtest-b"])
    assert any_root.run(["pacman", "-Q", "ashtest-b"], check=False).returncode != 0


# manager: (install command, its exit code, query of the manager's database)
FAILING = {
    "apt": ("apt-get install -y ashtest-fail", 100, "dpkg-query -W ashtest-fail"),
    "dnf5": ("dnf5 install -y ashtest-fail", 1, "rpm -q ashtest-fail"),
    "dnf": ("dnf install -y ashtest-fail", 1, "rpm -q ashtest-fail"),
    # pacman reports a failed post_install but exits 0
    "pacman": ("pacman -S --noconfirm ashtest-fail", 0, "pacman -Q ashtest-fail"),
}


@pytest.mark.parametrize("manager", FAILING)
def test_failing_install_script(bare_root: Root, manager: str) -> None:
    install, code, query = FAILING[manager]
    proc = bare_root.run(install, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "ashtest-fail:" in proc.stdout + proc.stderr  # the script's own message
    bare_root.run(query)  # the package is in the database, its script failed


VERSIONS = {
    "apt": [
        "apt-get install -y ashtest-v=1.0",
        "apt-get install -y ashtest-v",
        "apt-get install -y --allow-downgrades ashtest-v=1.0",
    ],
    "dnf5": [
        "dnf5 install -y ashtest-v-1.0",
        "dnf5 upgrade -y ashtest-v",
        "dnf5 downgrade -y ashtest-v",
    ],
    "dnf": [
        "dnf install -y ashtest-v-1.0",
        "dnf upgrade -y ashtest-v",
        "dnf downgrade -y ashtest-v",
    ],
    "pacman": [
        "pacman -S --noconfirm ashtest-old/ashtest-v",
        "pacman -S --noconfirm ashtest-v",
        "pacman -U --noconfirm /srv/ashtest/files/ashtest-v-1.0-1-any.pkg.tar.zst",
    ],
}


@pytest.mark.parametrize("manager", VERSIONS)
def test_upgrade_and_downgrade(bare_root: Root, manager: str) -> None:
    version = bare_root.path / "usr/share/ashtest/v"
    for command, expected in zip(VERSIONS[manager], ["1.0", "2.0", "1.0"], strict=True):
        bare_root.run(command)
        assert version.read_text() == f"{expected}\n", command


def test_subroot_for_installroot(bare_root: Root) -> None:
    root = bare_root
    sub = root.make_subroot("second")
    assert sub == Path("/second")
    root.run(["dnf5", "--installroot", str(sub), "install", "-y", "ashtest-a"])
    assert root.run(["rpm", "--root", str(sub), "-q", "ashtest-a"]).returncode == 0
    assert root.run(["rpm", "-q", "ashtest-a"], check=False).returncode != 0
    assert (root.path / "second/usr/share/ashtest/a").read_text() == "1.0\n"


def test_a_closed_root_leaves_nothing(rig: Rig) -> None:
    root = rig.new_root("closing")
    try:
        root.setup()
        root.make_subroot("sub")
        root.run("sleep 600 >/dev/null 2>&1 &")  # a process left behind in the root
        assert mounts_below(root.path)
    finally:
        root.close()
    assert not mounts_below(root.path)
    assert not root.path.exists()
    assert not root.folder.exists()


def test_delete_refuses_while_something_is_mounted_below(rig: Rig) -> None:
    folder = rig.paths.top / "tests" / "guard"
    (folder / "dev").mkdir(parents=True)
    mount("tmpfs", folder / "dev", fstype="tmpfs")
    try:
        (folder / "dev/keep").write_text("the host's /dev, say\n")
        with pytest.raises(RigError, match="still mounted"):
            delete_tree(folder, rig.paths.top)
        assert (folder / "dev/keep").exists()
    finally:
        unmount_below(folder)
    delete_tree(folder, rig.paths.top)
    assert not folder.exists()
