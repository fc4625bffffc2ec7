"""Users' data is in no layer and never rolled back (ashcore/data.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.btrfs.conftest import Image, sh

pytestmark = pytest.mark.btrfs


def _users_data(root: Path) -> None:
    (root / "home/eve").mkdir(parents=True)
    (root / "home/eve/notes.txt").write_text("eve's notes\n")
    (root / "home/eve/link").symlink_to("notes.txt")
    os.chown(root / "home/eve", 1000, 1000)
    (root / "var/log").mkdir(parents=True)
    (root / "var/log/syslog").write_text("line 1\n")
    (root / "root").mkdir(mode=0o700)
    (root / "root/.profile").write_text("PS1='# '\n")


def test_setup_moves_users_data_into_subvolumes_of_their_own(image: Image) -> None:
    _users_data(image.root)
    before = sh("sh", "-c", f"cd {image.root}/home && find . -printf '%p %m %u %s %T@\\n' | sort")
    out = image.ashctl("setup", check=True).stdout
    assert "kept out of layers: /home (users' data" in out
    assert "kept out of layers: /var/log (users' data" in out
    # Every byte, owner, mode and time is where it was, now on a mount of its own subvolume.
    after = sh("sh", "-c", f"cd {image.root}/home && find . -printf '%p %m %u %s %T@\\n' | sort")
    assert after == before
    assert (image.root / "home/eve/notes.txt").read_text() == "eve's notes\n"
    assert (image.root / "root/.profile").exists()
    for place in ("home", "var/log", "root"):
        assert os.path.ismount(image.root / place), place
        assert (image.top / "@ash/data" / place).is_dir()
    fstab = (image.root / "etc/fstab").read_text()
    assert " /home btrfs subvol=/@ash/data/home 0 0" in fstab
    assert " /var/log btrfs subvol=/@ash/data/var/log 0 0" in fstab
    # The deployment's own folders are empty under the mounts: the base layer holds no data.
    assert os.listdir(image.top / "@root/home") == []
    assert os.listdir(image.top / "@root/var/log") == []
    assert os.listdir(image.root / ".ash/layers/1/home") == []
    status = image.json("status")
    assert isinstance(status, dict)
    assert status["data"] == {"/home": "kept", "/root": "kept", "/var/log": "kept"}
    # Setup again changes nothing.
    image.ashctl("setup", check=True)
    assert (image.root / "etc/fstab").read_text() == fstab
    assert (
        len(
            subprocess.run(
                ["findmnt", "-rn", str(image.root / "home")], capture_output=True, text=True
            ).stdout.splitlines()
        )
        == 1
    )


def test_a_rollback_keeps_users_data_and_drift_never_reports_it(image: Image) -> None:
    _users_data(image.root)
    image.ashctl("setup", check=True)
    image.ashctl("run", "--name", "add", "--", "touch", str(image.root / "etc/added"), check=True)
    # After the layer: a user's new file, a log line, and a hand edit of /etc.
    (image.root / "home/eve/after.txt").write_text("written after layer 2\n")
    with open(image.root / "var/log/syslog", "a") as f:
        f.write("line 2\n")
    status = image.json("status")
    assert isinstance(status, dict)
    assert status["drift"] is False, status["drifted"]  # users' data is never drift
    (image.root / "etc/by-hand").write_text("x")
    image.ashctl("rollback", "1", check=True)
    assert not (image.root / "etc/added").exists()  # the software went back...
    assert not (image.root / "etc/by-hand").exists()
    # ...the users' data did not.
    assert (image.root / "home/eve/after.txt").read_text() == "written after layer 2\n"
    assert (image.root / "var/log/syslog").read_text() == "line 1\nline 2\n"
    assert os.path.ismount(image.root / "home") and os.path.ismount(image.root / "var/log")
    layers = image.json("list")
    assert isinstance(layers, list)
    drift = [x for x in layers if x["status"] == "drift"]
    assert len(drift) == 1 and "home" not in drift[0]["name"] and "log" not in drift[0]["name"]
    assert not (image.root / f".ash/layers/{drift[0]['id']}/home/eve").exists()
    # The new deployment's fstab mounts the same subvolumes at its boot.
    fstab = (image.root / "etc/fstab").read_text()
    assert fstab.count(" btrfs subvol=/@ash/data/") == 3


def test_an_existing_subvolume_is_moved_in_not_copied(image: Image) -> None:
    sh("btrfs", "subvolume", "create", str(image.root / "srv"))
    (image.root / "srv/site.html").write_text("<p>hi</p>\n")
    ino = os.stat(image.root / "srv/site.html").st_ino
    image.ashctl("setup", check=True)
    assert os.path.ismount(image.root / "srv")
    assert os.stat(image.root / "srv/site.html").st_ino == ino  # the same subvolume, moved
    assert not (image.top / "@root/srv.ash-new").exists()
    assert os.listdir(image.top / "@root/srv") == []


def test_a_place_mounted_by_the_system_is_left_alone(image: Image, tmp_path: Path) -> None:
    (image.root / "home").mkdir()
    sh("btrfs", "subvolume", "create", str(image.top / "@home"))
    (image.top / "@home/file").write_text("the distribution's @home\n")
    sh("mount", "-o", "subvol=@home", image.device, str(image.root / "home"))
    image.ashctl("setup", check=True)
    assert not (image.top / "@ash/data/home").exists()  # recognised, not nested
    assert (image.root / "home/file").exists()
    status = image.json("status")
    assert isinstance(status, dict) and status["data"] == {"/home": "mounted"}


def test_doctor_finds_and_mounts_a_data_subvolume_nothing_mounts(image: Image) -> None:
    _users_data(image.root)
    image.ashctl("setup", check=True)
    sh("umount", str(image.root / "home"))
    out = image.ashctl("doctor")
    assert out.returncode == 1 and "/home: its subvolume is not mounted" in out.stdout
    assert not os.path.ismount(image.root / "home")  # plain doctor changes nothing
    image.ashctl("doctor", "--repair", check=True)
    assert os.path.ismount(image.root / "home")
    assert (image.root / "home/eve/notes.txt").exists()


def test_ash_toml_adds_and_removes_places(image: Image) -> None:
    _users_data(image.root)
    (image.root / "opt/games/saves").mkdir(parents=True)
    (image.root / "etc/ash").mkdir()
    (image.root / "etc/ash/ash.toml").write_text(
        '[data]\nadd = ["opt/games/saves"]\nremove = ["var/log"]\n'
    )
    image.ashctl("setup", check=True)
    assert os.path.ismount(image.root / "opt/games/saves")
    assert not os.path.ismount(image.root / "var/log")
    assert (image.root / ".ash/layers/1/var/log/syslog").exists()  # in layers, as asked


def test_a_move_cut_after_its_swap_is_finished_by_the_next_setup(image: Image) -> None:
    """A kill between the swap (the subvolume beside its place, an empty folder in it) and
    the rename into the store: the next setup finishes the move, nothing is hidden."""
    sh("btrfs", "subvolume", "create", str(image.root / "srv"))
    (image.root / "srv/site.html").write_text("<p>hi</p>\n")
    sh("mv", "-T", str(image.root / "srv"), str(image.root / "srv.ash-new"))
    (image.root / "srv").mkdir()
    image.ashctl("setup", check=True)
    assert (image.root / "srv/site.html").read_text() == "<p>hi</p>\n"
    assert not (image.root / "srv.ash-new").exists()
