from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.btrfs.conftest import Image

pytestmark = pytest.mark.btrfs


def test_setup_creates_store_beside_root_and_base_layer(image: Image) -> None:
    out = image.ashctl("setup", check=True).stdout
    assert "store: subvolume /@ash" in out
    assert (image.top / "@ash" / "ash.db").exists()
    assert os.path.ismount(image.root / ".ash")
    fstab = (image.root / "etc/fstab").read_text()
    assert " /.ash btrfs subvol=/@ash" in fstab
    layers = image.json("list")
    assert [(x["id"], x["name"], x["status"]) for x in layers] == [(1, "base", "committed")]
    status = image.json("status")
    assert isinstance(status, dict)
    assert status.pop("free") > 0 and status.pop("size") >= 0
    assert status == {
        "drifted": [],
        "layer": 1,
        "labels": [],
        "throwaway_boot": False,
        "pending_reboot": False,
        "next_boot": None,
        "drift": False,
        "pending": None,
        "interrupted_rollback": False,
        "data": {},
        "tries": [],
    }


def test_setup_twice_changes_nothing(ready: Image) -> None:
    fstab = (ready.root / "etc/fstab").read_text()
    ready.ashctl("setup", check=True)
    assert (ready.root / "etc/fstab").read_text() == fstab
    assert len(ready.json("list")) == 1


def test_setup_refuses_a_root_that_is_not_btrfs(tmp_path: Path, image: Image) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(plain)], check=True)
    try:
        result = image.ashctl("setup", root=plain)
    finally:
        subprocess.run(["umount", str(plain)], check=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"ashctl: {plain} is a tmpfs mount, not btrfs (ashlayers needs a btrfs root)"
    )


def test_setup_refuses_a_folder_that_is_not_a_mount_point(image: Image) -> None:
    inner = image.root / "srv"
    inner.mkdir()
    result = image.ashctl("setup", root=inner)
    assert result.returncode == 1
    assert "is not a mount point" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_commands_before_setup_say_what_to_do(image: Image) -> None:
    result = image.ashctl("list")
    assert result.returncode == 1
    assert "run `ashctl setup`" in result.stderr
    assert "Traceback" not in result.stderr


def test_setup_refuses_the_top_level_of_the_filesystem(image: Image) -> None:
    result = image.ashctl("setup", root=image.top)
    assert result.returncode == 1
    assert "is the top level of its btrfs filesystem" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (image.top / "@ash").exists()


def test_setup_installs_the_prune_timer_and_enables_it_only_with_rules(image: Image) -> None:
    (image.root / "usr/lib/systemd").mkdir(parents=True)
    (image.root / "usr/lib/systemd/systemd").write_text("")
    image.ashctl("setup", check=True)
    units = image.root / "etc/systemd/system"
    service = (units / "ashlayers-prune.service").read_text()
    assert "ConditionPathIsMountPoint=/.ash\n" in service
    assert "ExecStart=/usr/bin/python3 -m ashcore.cli prune\n" in service
    assert "@ASH_" not in service
    assert "OnCalendar=daily" in (units / "ashlayers-prune.timer").read_text()
    wants = units / "timers.target.wants/ashlayers-prune.timer"
    assert not wants.exists(), "pruning deletes history: not without the user's rules"
    (image.root / "etc/ash/ash.toml").write_text('[retention]\nmax_size = "20G"\n')
    again = image.ashctl("setup", check=True)
    assert os.readlink(wants) == "/etc/systemd/system/ashlayers-prune.timer", again.stdout
    assert "enabled ashlayers-prune.timer" in again.stdout
