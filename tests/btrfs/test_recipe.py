"""Export and apply on a real root: a recipe writes and removes only inside the root it is
applied to, resolved as the root sees it, never across a mount point; export's outputs never
follow a planted symlink."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.btrfs.conftest import Image, mounted_below, sh
from tests.unit.test_recipe import Entry, files_op, recipe

pytestmark = pytest.mark.btrfs


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_apply_never_writes_through_the_roots_absolute_symlinks(
    ready: Image, tmp_path: Path
) -> None:
    host = tmp_path / "host-run"  # stands for the host's /run: a folder of this test's own
    host.mkdir()
    (ready.root / "var").mkdir()
    (ready.root / "var/run").symlink_to(host)
    mounts = mounted_below(ready.root)
    path = recipe(tmp_path, files_op(tmp_path, "b.tar", Entry("var/run/x", data=b"x\n")))
    result = ready.ashctl("apply", path)
    one_line_refusal(result)
    assert list(host.iterdir()) == []
    assert mounted_below(ready.root) == mounts


def test_a_symlink_in_one_bundle_then_a_file_through_it_stays_in_the_root(
    ready: Image, tmp_path: Path
) -> None:
    host = tmp_path / "host-folder"
    host.mkdir()
    first = files_op(tmp_path, "1.tar", Entry("etc/link", tarfile.SYMTYPE, link=str(host)))
    second = files_op(tmp_path, "2.tar", Entry("etc/link/planted", data=b"owned\n"))
    result = ready.ashctl("apply", recipe(tmp_path, first, second))
    one_line_refusal(result)
    assert list(host.iterdir()) == []


def test_var_run_of_the_root_is_the_roots_run_and_refused(ready: Image, tmp_path: Path) -> None:
    (ready.root / "var").mkdir()
    (ready.root / "var/run").symlink_to("/run")
    (ready.root / "run").mkdir(exist_ok=True)  # as a real root has it
    name = f"ashlayers-test-{os.getpid()}-{tmp_path.name}"
    path = recipe(tmp_path, files_op(tmp_path, "b.tar", Entry(f"var/run/{name}", data=b"x")))
    result = ready.ashctl("apply", path)
    one_line_refusal(result)
    assert "never touches" in result.stderr, result.stderr
    assert not (Path("/run") / name).exists() and not (ready.root / "run" / name).exists()


@pytest.mark.parametrize("removed", ["etc", "dev/null", "dev", "proc/1", "boot"])
def test_apply_refuses_to_remove_a_top_level_folder_or_the_api_places(
    ready: Image, tmp_path: Path, removed: str
) -> None:
    op = files_op(tmp_path, "b.tar", Entry("etc/new", data=b"x"), remove=(removed,))
    result = ready.ashctl("apply", recipe(tmp_path, op))
    one_line_refusal(result)
    assert (ready.root / "etc/ash").is_dir() and not (ready.root / "etc/new").exists()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_apply_never_crosses_a_mount_point(ready: Image, tmp_path: Path) -> None:
    data = ready.root / "opt/data"
    data.mkdir(parents=True)
    sh("mount", "-t", "tmpfs", "-o", "size=1M", "ashtest", str(data))
    (data / "precious").write_text("mine\n")
    for op in (
        files_op(tmp_path, "w.tar", Entry("opt/data/x", data=b"x")),
        files_op(tmp_path, "r.tar", remove=("opt/data",)),
        files_op(tmp_path, "f.tar", remove=("opt/data/precious",)),
    ):
        result = ready.ashctl("apply", recipe(tmp_path, op))
        one_line_refusal(result)
        assert "mount point" in result.stderr, result.stderr
    assert [p.name for p in data.iterdir()] == ["precious"]


def test_a_removal_that_holds_a_subvolume_removes_nothing(ready: Image, tmp_path: Path) -> None:
    (ready.root / "opt/app/logs").mkdir(parents=True)
    (ready.root / "opt/app/config").write_text("x\n")
    sh("btrfs", "subvolume", "create", str(ready.root / "opt/app/logs/db"))
    (ready.root / "opt/app/logs/db/rows").write_text("rows\n")
    result = ready.ashctl(
        "apply", recipe(tmp_path, files_op(tmp_path, "b.tar", remove=("opt/app",)))
    )
    one_line_refusal(result)
    assert (ready.root / "opt/app/config").exists()
    assert (ready.root / "opt/app/logs/db/rows").read_text() == "rows\n"


def test_dry_run_mounts_nothing_and_changes_nothing(ready: Image, tmp_path: Path) -> None:
    command = '\n[[operation]]\nname = "x"\ncommand = ["apt-get", "install", "-y", "htop"]\n'
    op = files_op(tmp_path, "b.tar", Entry("etc/motd", data=b"hi\n"), remove=("etc/ash/ash.toml",))
    mounts = mounted_below(ready.root)
    result = ready.ashctl("apply", "--dry-run", recipe(tmp_path, command, op))
    assert result.returncode == 0, result.stderr
    assert "run apt-get install -y htop" in result.stdout, result.stdout
    assert "write /etc/motd (file, 3 bytes" in result.stdout, result.stdout
    assert "remove /etc/ash/ash.toml" in result.stdout, result.stdout
    assert mounted_below(ready.root) == mounts and not (ready.root / "etc/motd").exists()


def test_export_refuses_a_planted_symlink_in_a_shared_folder(ready: Image, tmp_path: Path) -> None:
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    (ready.root / "etc/hand-edit").write_text("mine\n")
    ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"), check=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    for layer in range(2, 6):  # whatever ids the drift and the run get
        for suffix in ("tar", "tar.list"):
            (shared / f"recipe.{layer}.{suffix}").symlink_to(victim)
    result = ready.ashctl("export", "-o", str(shared / "recipe.toml"))
    one_line_refusal(result)
    assert "symlink" in result.stderr, result.stderr
    assert victim.read_text() == "secret\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_export_then_apply_carries_the_hand_edits_into_another_root(
    ready: Image, tmp_path: Path
) -> None:
    (ready.root / "etc/hand-edit").write_text("mine\n")
    (ready.root / "etc/secret").write_text("s\n")
    (ready.root / "etc/secret").chmod(0o600)
    (ready.root / "usr/local/bin").mkdir(parents=True)
    (ready.root / "usr/local/bin/tool").write_text("#!/bin/sh\n")
    (ready.root / "usr/local/bin/tool").chmod(0o4755)
    ready.ashctl("run", "--name", "next", "--", "rm", str(ready.root / "etc/hand-edit"), check=True)
    out = tmp_path / "out"
    out.mkdir()
    result = ready.ashctl("export", "-o", str(out / "recipe.toml"), check=True)
    bundles = sorted(out.glob("recipe.*.tar"))
    assert len(bundles) == 2, result.stdout
    assert all(stat.S_IMODE(b.stat().st_mode) == 0o600 for b in bundles)
    text = (out / "recipe.toml").read_text()
    assert text.count("sha256 = ") == 2 and 'remove = ["etc/hand-edit"]' in text, text
    copy = ready.top / "@copy"
    sh("btrfs", "subvolume", "create", str(copy))
    (copy / "etc").mkdir()
    result = ready.ashctl("apply", str(out / "recipe.toml"), root=copy)
    assert result.returncode == 0, result.stderr
    assert not (copy / "etc/hand-edit").exists()
    assert (copy / "etc/secret").read_text() == "s\n"
    assert stat.S_IMODE((copy / "etc/secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((copy / "usr/local/bin/tool").stat().st_mode) == 0o4755
    assert not (copy / "proc/self").exists()


def test_export_leaves_out_what_apply_never_touches(ready: Image, tmp_path: Path) -> None:
    """A drift layer of a root whose /run is a plain folder holds what a manager left there
    (dnf5's /run/dnf): its bundle leaves /run out, so the recipe applies elsewhere."""
    (ready.root / "etc/hand-edit").write_text("mine\n")
    (ready.root / "run/dnf").mkdir(parents=True, exist_ok=True)
    (ready.root / "run/dnf/lock").write_text("1\n")
    ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"), check=True)
    out = tmp_path / "out"
    out.mkdir()
    ready.ashctl("export", "-o", str(out / "recipe.toml"), check=True)
    members = []
    for bundle in out.glob("recipe.*.tar"):
        with tarfile.open(bundle) as tar:
            members += tar.getnames()
    assert "etc/hand-edit" in members and not [m for m in members if m.startswith("run")]
    copy = ready.top / "@copy"
    sh("btrfs", "subvolume", "create", str(copy))
    (copy / "etc").mkdir()
    result = ready.ashctl("apply", str(out / "recipe.toml"), root=copy)
    assert result.returncode == 0, result.stderr
    assert (copy / "etc/hand-edit").read_text() == "mine\n"
    assert not (copy / "run/dnf").exists()
