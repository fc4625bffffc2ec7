"""What an unprivileged user or a careless admin can put in the way: nothing stops the
package operations, nothing outside the root is touched, nothing untrusted reaches the
terminal raw."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.btrfs.conftest import Image
from tests.btrfs.test_lifecycle import layers

pytestmark = pytest.mark.btrfs


def test_a_file_name_that_is_not_utf8_stops_nothing(ready: Image) -> None:
    home = ready.root / "home/user"
    home.mkdir(parents=True)
    with open(os.path.join(os.fsencode(home), b"bad\xff\xfename"), "w") as f:
        f.write("x")
    result = ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"))
    assert result.returncode == 0, result.stderr
    drift = [x for x in layers(ready) if x["status"] == "drift"]
    assert len(drift) == 1 and "bad\\xff\\xfename" in drift[0]["name"], drift
    assert "bad\\xff\\xfename" in ready.ashctl("list", check=True).stdout
    probes = [n for n in os.listdir(ready.root / ".ash/layers") if n.startswith("probe")]
    assert probes == []


def test_file_names_cannot_write_to_the_terminal_or_fake_a_line(ready: Image) -> None:
    home = ready.root / "home/user"
    home.mkdir(parents=True)
    (home / "\x1b]0;OWNED\x07\x1b[31mRED").write_text("x")
    (home / "x\n*  999  2026-11-29T19:12:30  committed   apt-get install trusted").write_text("x")
    ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"), check=True)
    for command in ("list", "tree"):
        out = ready.ashctl(command, check=True).stdout
        assert "\x1b" not in out and "\x07" not in out, out
        assert len(out.splitlines()) == 3, out  # base, the drift layer, next: no fake line
        assert "\\x1b]0;OWNED" in out
    drift = next(x for x in layers(ready) if x["status"] == "drift")
    assert "\x1b" not in ready.ashctl("show", str(drift["id"]), check=True).stdout


@pytest.mark.parametrize("entry", ["/root/precious", "../../../root/precious", "a/../b", ""])
def test_a_lock_file_outside_the_root_is_refused(ready: Image, entry: str) -> None:
    conf = ready.root / "etc/ash/ash.toml"
    conf.write_text(f'lock_files = ["{entry}"]\n')
    result = ready.ashctl("run", "--name", "x", "--", "touch", str(ready.root / "etc/x"))
    assert result.returncode != 0
    assert "not a plain path inside the root" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_lock_file_behind_a_symlink_is_never_deleted_outside_the_snapshot(
    ready: Image, tmp_path: Path
) -> None:
    """The root's var/lib/pacman is a symlink to a live folder outside it: the lock file is
    dropped from the layer only if it is inside the snapshot."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "db.lck").write_text("live")
    (ready.root / "var/lib").mkdir(parents=True)
    (ready.root / "var/lib/pacman").symlink_to(outside)
    ready.ashctl("run", "--name", "x", "--", "touch", str(ready.root / "etc/x"), check=True)
    assert (outside / "db.lck").read_text() == "live"


def test_a_fifo_at_a_config_path_is_refused_at_once(ready: Image) -> None:
    os.mkfifo(ready.root / "etc/ash/hooks.d/run.toml", 0o644)
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(ready.root)]
    result = subprocess.run(
        [*argv, "run", "--name", "x", "--", "touch", str(ready.root / "etc/x")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "not a regular file" in result.stderr, result.stderr


def test_a_user_is_told_that_ashctl_needs_root(ready: Image) -> None:
    for command in (
        ["list"],
        ["status"],
        ["doctor"],
        ["run", "--", "touch", str(ready.root / "etc/x")],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ashcore.cli", "--root", str(ready.root), *command],
            capture_output=True,
            text=True,
            user=65534,
            env={**os.environ, "HOME": "/"},
            cwd="/",
        )
        assert result.returncode == 2, (command, result.stderr)
        assert "needs root" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("ref", ["²", "٣", "999999999999999999999999", "-1"])
def test_a_layer_is_named_by_ascii_digits_only(ready: Image, ref: str) -> None:
    for name in ("two", "three"):  # layer 3 exists: `٣` must not reach it
        ready.ashctl(
            "run", "--name", name, "--", "touch", str(ready.root / f"etc/{name}"), check=True
        )
    result = ready.ashctl("show", ref)
    assert result.returncode != 0 and "no layer" in result.stderr, result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("name", ["a\u202eb", "x\u200by", "--help", "line\u2028two", "c\x9bd"])
def test_a_layer_name_with_invisible_or_control_characters_is_refused(
    ready: Image, name: str
) -> None:
    result = ready.ashctl("run", f"--name={name}", "--", "touch", str(ready.root / "etc/refused"))
    assert result.returncode == 2 and "layer name" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_rollback_refuses_when_the_running_root_cannot_be_told(
    ready: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ashcore import deployments
    from ashcore.errors import UsageError

    real_stat = os.stat

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if path == "/proc/1/root":
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(UsageError, match="cannot tell whether"):
        deployments.is_booted_root("/")  # this process's own root: maybe a chroot
    assert deployments.is_booted_root(str(ready.root)) is False  # a folder in it: not booted


def deep_history(img: Image, depth: int) -> None:
    """Records of a straight chain `depth` layers deep above base, and a fork at its top
    (the tree reads records only)."""
    from ashcore.model import Layer, Status
    from ashcore.store import Store

    store = Store(str(img.root / ".ash"))
    with store.transaction(store.db):
        for i in range(2, depth + 4):
            parent = i - 1 if i < depth + 3 else depth
            store.insert_layer(
                Layer(
                    id=i,
                    name=f"op {i}",
                    parent=parent,
                    manager="apt",
                    command="apt",
                    status=Status.COMMITTED,
                    created="2026-11-29T00:00:00",
                )
            )
    store.close()


def test_the_tree_of_a_deep_history_is_flat_and_whole(ready: Image) -> None:
    deep_history(ready, 3000)
    result = ready.ashctl("tree")
    assert result.returncode == 0, result.stderr[-500:]
    lines = result.stdout.splitlines()
    assert len(lines) == 3003
    assert max(len(line) for line in lines) < 60  # a chain stays in its column
    # The fork at the top: two branches, each drawn once.
    assert sum(1 for line in lines if line.startswith(("├─ ", "└─ "))) == 2, lines[-4:]


def test_a_reader_that_stops_early_gets_no_error(ready: Image) -> None:
    deep_history(ready, 3000)
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(ready.root), "tree"]
    result = subprocess.run(
        ["sh", "-c", '"$@" | head -1', "sh", *argv], capture_output=True, text=True
    )
    assert result.stdout.startswith("1 base") and result.stderr == "", result.stderr


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("ashctl (ashlayers) ")


def test_setup_and_doctor_say_when_btrfs_progs_is_missing(ready: Image) -> None:
    (ready.root / "usr/sbin/btrfs").unlink()
    result = ready.ashctl("doctor")
    assert result.returncode == 1 and "btrfs-progs is not installed" in result.stdout
    result = ready.ashctl("setup")
    assert result.returncode == 1 and "btrfs-progs is not installed" in result.stderr


def test_status_lists_what_drifted(ready: Image) -> None:
    (ready.root / "etc/motd").write_text("edited\n")
    out = ready.ashctl("status", check=True).stdout
    assert "drift: yes" in out and "  /etc/motd" in out, out
    assert ready.json("status")["drifted"] == ["etc/motd"]  # type: ignore[index]


def test_a_rollback_to_a_layer_whose_snapshot_is_gone_names_it(ready: Image) -> None:
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    import btrfsutil

    btrfsutil.delete_subvolume(str(ready.root / ".ash/layers/1"))
    result = ready.ashctl("rollback", "1")
    assert result.returncode == 2 and "snapshot of layer 1 (base) is gone" in result.stderr


def test_doctor_repair_of_a_corrupt_database_says_it_is_mended(ready: Image) -> None:
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    for suffix in ("-wal", "-shm"):
        (ready.root / f".ash/ash.db{suffix}").unlink(missing_ok=True)
    (ready.root / ".ash/ash.db").write_bytes(b"this is not a database" * 100)
    result = ready.ashctl("doctor", "--repair")
    assert result.returncode == 0 and "not mended" not in result.stdout, result.stdout
    assert [x["name"] for x in layers(ready)] == ["base", "one"]


def _deep(top: str, levels: int, leaf: str) -> str:
    """Folders `levels` deep of 100-character names below `top` (openat, one level at a
    time: the whole path is longer than PATH_MAX), a file `leaf` at the bottom; returns the
    path relative to `top`."""
    names = [f"{i:03d}" + "d" * 97 for i in range(levels)]
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            down = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = down
        with open(os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("deep\n")
    finally:
        os.close(fd)
    return "/".join([*names, leaf])


def _read_deep(top: str, rel: str) -> str | None:
    """The text of the file at `rel` below `top` (longer than PATH_MAX), or None."""
    *folders, leaf = rel.split("/")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in folders:
            down = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = down
        with open(os.open(leaf, os.O_RDONLY, dir_fd=fd)) as f:
            return f.read()
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)


def _append_deep(top: str, rel: str, text: str) -> None:
    *folders, leaf = rel.split("/")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in folders:
            down = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = down
        with open(os.open(leaf, os.O_WRONLY | os.O_APPEND, dir_fd=fd), "a") as f:
            f.write(text)
    finally:
        os.close(fd)


def test_a_path_longer_than_path_max_stops_nothing_and_its_drift_is_kept(ready: Image) -> None:
    """A user made a path of 80 folders of 100 characters under their home: the kernel's
    `btrfs send` refuses it (ENAMETOOLONG), and every operation stopped. The drift is still
    found, kept as a layer with its name cut short, and a later change deep down is too."""
    home = ready.root / "home/user"
    home.mkdir(parents=True)
    deep = "home/user/" + _deep(str(home), 80, "leaf")
    assert len(deep) > 4096
    result = ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "send" not in result.stderr, result.stderr
    found = layers(ready)
    assert [x["status"] for x in found] == ["committed", "drift", "committed"], found
    drift = found[1]
    assert drift["name"].startswith("drift: home") and len(drift["name"]) <= 200, drift
    assert _read_deep(str(ready.root / f".ash/layers/{drift['id']}"), deep) == "deep\n"

    # A change deep down is drift too (the tree search cannot name it: it must not be missed).
    _append_deep(str(ready.root), deep, "more\n")
    status = ready.ashctl("status")
    assert status.returncode == 0 and "drift: yes" in status.stdout, status
    assert max(len(line) for line in status.stdout.splitlines()) < 300  # cut short to show
    assert ready.json("status")["drifted"][0].startswith("home/user/000")  # type: ignore[index]
    ready.ashctl("run", "--name", "again", "--", "touch", str(ready.root / "etc/again"), check=True)
    found = layers(ready)
    assert [x["name"] for x in found][-2:][1] == "again" and found[-2]["status"] == "drift"
    assert _read_deep(str(ready.root / f".ash/layers/{found[-2]['id']}"), deep) == "deep\nmore\n"

    # Reading, checking, listing files and rolling back all work with it in the root.
    for command in (["list"], ["doctor"], ["diff", "--files", "1", str(found[-1]["id"])]):
        result = ready.ashctl(*command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    rolled = ready.ashctl("rollback", "next")
    assert rolled.returncode == 0, rolled.stderr
    assert _read_deep(str(ready.root), deep) == "deep\n"
