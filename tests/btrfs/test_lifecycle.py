from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.btrfs.conftest import Image, sh

pytestmark = pytest.mark.btrfs


def layers(img: Image) -> list[dict[str, Any]]:
    result = img.json("list")
    assert isinstance(result, list)
    return result


def test_run_makes_a_read_only_layer_child_of_the_deployment(ready: Image) -> None:
    ready.ashctl("run", "--", "touch", str(ready.root / "etc/hello"), check=True)
    new = layers(ready)[-1]
    assert (new["id"], new["parent"], new["status"]) == (2, 1, "committed")
    assert new["name"] == f"touch {ready.root}/etc/hello"
    snap = ready.root / ".ash/layers/2"
    assert (snap / "etc/hello").exists()
    assert not (ready.root / ".ash/layers/1/etc/hello").exists()
    with pytest.raises(OSError):
        (snap / "etc/new").write_text("x")  # read-only
    assert ready.json("status")["layer"] == 2  # type: ignore[index]


def test_failed_command_leaves_a_failed_layer(ready: Image) -> None:
    result = ready.ashctl("run", "--name", "boom", "--", "sh", "-c", "touch /dev/null; exit 3")
    assert result.returncode == 3
    assert layers(ready)[-1]["status"] == "failed"


def leftovers(img: Image) -> list[str]:
    """What a run must not leave in the store: partial snapshots, probes."""
    return sorted(
        p.name
        for p in (img.root / ".ash/layers").iterdir()
        if p.name.endswith(".partial") or p.name.startswith("probe")
    )


def test_a_run_that_changes_nothing_makes_no_layer_and_says_so(ready: Image) -> None:
    (ready.root / "var/log").mkdir(parents=True)
    result = ready.ashctl("run", "--name", "noop", "--", "true")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["ashlayers: nothing changed, no layer"]
    # Noise (a log) is no change either; the command's exit code is ashctl's.
    log = ready.root / "var/log/syslog"
    result = ready.ashctl("run", "--", "sh", "-c", f"echo noise >> {log}; exit 0")
    assert (result.returncode, result.stderr) == (0, "ashlayers: nothing changed, no layer\n")
    assert [x["name"] for x in layers(ready)] == ["base"]
    assert leftovers(ready) == []
    status = ready.json("status")
    assert status["layer"] == 1 and status["pending"] is None  # type: ignore[index]
    assert ready.ashctl("doctor").stdout == "store is consistent\n"
    # The next run that changes something is a child of the same layer.
    ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"), check=True)
    found = layers(ready)
    assert [(x["name"], x["parent"]) for x in found] == [("base", None), ("next", 1)]
    # Ids count layers, not attempts: the two runs that made none gave theirs back.
    assert found[-1]["id"] == 2
    # A layer's id is never given again, even once the layer is gone.
    ready.ashctl("rollback", "1", check=True)
    ready.ashctl("remove", "2", check=True)
    ready.ashctl("run", "--name", "third", "--", "touch", str(ready.root / "etc/3"), check=True)
    assert layers(ready)[-1]["id"] == 3


def test_a_run_that_changes_only_a_managers_database_makes_a_layer(ready: Image) -> None:
    """A package run's writes to its own databases alone are its own; a command's (apt-mark
    hold, rpm --justdb) are what it changed."""
    status = ready.root / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text("Package: x\nStatus: install ok installed\n")
    ready.ashctl("run", "--name", "drift", "--", "touch", str(ready.root / "etc/x"), check=True)
    hold = f"sed -i s/install/hold/ {status}"
    result = ready.ashctl("run", "--name", "hold", "--", "sh", "-c", hold)
    assert result.returncode == 0, result.stderr
    made = layers(ready)[-1]
    assert (made["name"], made["status"]) == ("hold", "committed")
    kept = ready.root / f".ash/layers/{made['id']}/var/lib/dpkg/status"
    assert "hold ok installed" in kept.read_text()


@pytest.mark.parametrize(
    ("kind", "code", "why"),
    [("missing", 127, "No such file or directory"), ("not-executable", 126, "Permission denied")],
)
def test_a_command_that_cannot_start_leaves_no_layer_and_nothing_behind(
    ready: Image, kind: str, code: int, why: str
) -> None:
    command = "nosuchcmd-ash"
    if kind == "not-executable":
        script = ready.dir / "script"
        script.write_text("#!/bin/sh\ntouch /tmp/ran\n")
        script.chmod(0o644)
        command = str(script)
    (ready.root / "etc/by-hand").write_text("drift, kept before the run")
    result = ready.ashctl("run", "--name", "never", "--", command, "arg")
    assert result.returncode == code
    assert result.stderr.splitlines()[-1:] == [f"ashctl: cannot run '{command}': {why}"]
    assert "Traceback" not in result.stderr
    found = layers(ready)
    assert [(x["name"], x["status"]) for x in found] == [
        ("base", "committed"),
        ("drift: etc/by-hand", "drift"),
    ]
    assert leftovers(ready) == []
    status = ready.json("status")
    assert status["pending"] is None and status["layer"] == 2  # type: ignore[index]
    assert ready.ashctl("doctor").stdout == "store is consistent\n"


def test_drift_becomes_its_own_layer_and_noise_does_not(ready: Image) -> None:
    (ready.root / "var/log").mkdir(parents=True)
    (ready.root / "var/log/syslog").write_text("noise")
    (ready.root / "tmp").mkdir()
    (ready.root / "tmp/x").write_text("noise")
    assert ready.json("status")["drift"] is False  # type: ignore[index]
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    assert [x["name"] for x in layers(ready)] == ["base", "one"]
    (ready.root / "etc/motd").write_text("by hand")
    assert ready.json("status")["drift"] is True  # type: ignore[index]
    ready.ashctl("run", "--name", "two", "--", "touch", str(ready.root / "etc/two"), check=True)
    found = layers(ready)
    assert [(x["name"], x["status"], x["parent"]) for x in found[2:]] == [
        ("drift: etc/motd", "drift", 2),
        ("two", "committed", 3),
    ]
    assert (ready.root / ".ash/layers/3/etc/motd").read_text() == "by hand"


def test_lock_files_are_never_kept_in_a_layer(ready: Image) -> None:
    lock = ready.root / "var/lib/pacman/db.lck"
    lock.parent.mkdir(parents=True)
    also = ready.root / "etc/locked"  # a lock file alone is no change: no layer
    ready.ashctl("run", "--name", "locked", "--", "touch", str(lock), str(also), check=True)
    assert lock.exists()
    made = layers(ready)[-1]
    assert made["name"] == "locked"
    assert not (ready.root / f".ash/layers/{made['id']}/var/lib/pacman/db.lck").exists()
    assert (ready.root / f".ash/layers/{made['id']}/var/lib/pacman").is_dir()
    assert ready.json("status")["drift"] is False  # type: ignore[index]


def test_rollback_of_a_root_not_booted_takes_effect_at_once_and_keeps_the_state(
    ready: Image,
) -> None:
    ready.ashctl("run", "--name", "add", "--", "touch", str(ready.root / "etc/added"), check=True)
    (ready.root / "etc/by-hand").write_text("x")
    out = ready.ashctl("rollback", check=True).stdout
    assert "rolled back to layer 1 (base): takes effect now" in out
    assert not (ready.root / "etc/added").exists()
    assert not (ready.root / "etc/by-hand").exists()
    assert os.path.ismount(ready.root / ".ash")
    found = layers(ready)
    assert [x["status"] for x in found] == ["committed", "committed", "drift"]
    assert (ready.root / ".ash/layers/3/etc/by-hand").exists()  # the state left is kept
    status = ready.json("status")
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
    # The next operation branches from the layer rolled back to.
    ready.ashctl(
        "run", "--name", "branch", "--", "touch", str(ready.root / "etc/branch"), check=True
    )
    assert layers(ready)[-1]["parent"] == 1
    tree = ready.ashctl("tree", check=True).stdout
    assert "branch [committed " in tree and "]  <- deployment" in tree


def test_rollback_to_a_named_layer(ready: Image) -> None:
    ready.ashctl("run", "--name", "first", "--", "touch", str(ready.root / "etc/1"), check=True)
    ready.ashctl("run", "--name", "second", "--", "touch", str(ready.root / "etc/2"), check=True)
    ready.ashctl("rollback", "first", check=True)
    assert (ready.root / "etc/1").exists() and not (ready.root / "etc/2").exists()


def test_concurrent_transactions_are_serialised_and_none_is_lost(ready: Image) -> None:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ashcore.cli",
                "--root",
                str(ready.root),
                "run",
                "--name",
                f"t{i}",
                "--",
                "sh",
                "-c",
                f"sleep 0.3; touch {ready.root}/etc/t{i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
    found = layers(ready)
    assert sorted(x["name"] for x in found[1:]) == ["t0", "t1", "t2"]
    # A chain, not siblings: each began after the previous committed.
    assert [x["parent"] for x in found[1:]] == [1, 2, 3]
    assert all(x["status"] == "committed" for x in found)
    assert ready.ashctl("doctor").returncode == 0


def write_mib(img: Image, name: str, mib: int = 1) -> None:
    """A layer that adds `mib` MiB of new data at /opt/<name>."""
    target = img.root / "opt" / name
    img.ashctl(
        "run",
        "--name",
        name,
        "--",
        "sh",
        "-c",
        f"mkdir -p {target.parent} && head -c {mib}M /dev/urandom > {target}",
        check=True,
    )


def test_prune_frees_a_straight_history_and_keeps_the_records(ready: Image) -> None:
    for name in ("a", "b", "c", "d"):
        write_mib(ready, name)
    sizes = {x["name"]: x["size"] for x in layers(ready)}
    assert sizes["base"] == 0
    assert all(1 << 20 <= sizes[n] < (1 << 20) + (64 << 10) for n in "abcd"), sizes
    ready.ashctl("pin", "b", check=True)
    dry = ready.ashctl("prune", "--keep", "1", "--dry-run", check=True).stdout
    assert "would prune layer 2 (a, 1.0M)" in dry and "layer 3" not in dry, dry
    assert (ready.root / ".ash/layers/2").exists()
    out = ready.ashctl("prune", "--keep", "1", check=True).stdout
    found = {x["name"]: x for x in layers(ready)}
    # Inner layers of the deployment's own line go; the base, the pin and the head stay.
    assert [found[n]["status"] for n in ("base", "a", "b", "c", "d")] == [
        "committed",
        "pruned",
        "committed",
        "pruned",
        "committed",
    ], out
    assert not (ready.root / ".ash/layers/2").exists()
    assert not (ready.root / ".ash/layers/4").exists()
    assert (ready.root / "opt/a").exists()  # the root is untouched
    # d now stands on b: it is measured again against b (c's file counts as d's too).
    assert found["d"]["size"] >= 2 << 20
    # The record works where only the record is needed.
    assert ready.json("show", "a")["status"] == "pruned"  # type: ignore[index]
    assert "a [pruned]" in ready.ashctl("tree", check=True).stdout
    assert ready.ashctl("diff", "a").returncode == 0
    files = ready.ashctl("diff", "a", "--files")
    assert files.returncode == 2 and "layer 2 was pruned" in files.stderr, files.stderr
    back = ready.ashctl("rollback", "a")
    assert back.returncode == 2 and "was pruned" in back.stderr, back.stderr
    assert ready.ashctl("doctor").returncode == 0
    assert ready.ashctl("prune", "--keep", "1", check=True).stdout.strip() == "nothing to prune"


def test_prune_to_a_size_budget(ready: Image) -> None:
    for name in ("a", "b", "c", "d"):  # each rewrites /opt/f: each layer holds its version
        ready.ashctl(
            "run",
            "--name",
            name,
            "--",
            "sh",
            "-c",
            f"mkdir -p {ready.root}/opt && head -c 2M /dev/urandom > {ready.root}/opt/f",
            check=True,
        )
    assert ready.json("status")["size"] >= 8 << 20  # type: ignore[index]
    out = ready.ashctl("prune", "--max-size", "5M", check=True).stdout
    assert ready.json("status")["size"] <= 5 << 20, out  # type: ignore[index]
    pruned = [x["name"] for x in layers(ready) if x["status"] == "pruned"]
    assert pruned == ["a", "b"], (pruned, out)  # the oldest, and no more than needed
    # What the deployment's layer holds cannot go: said, and nothing pruned for nothing.
    short = ready.ashctl("prune", "--max-size", "1M", check=True).stdout
    assert "still hold" in short and "deployment's own layer" in short, short
    assert [x["status"] for x in layers(ready)].count("pruned") == 3, short  # c freed its 2M


def test_layer_sizes_explain_the_store_growth(ready: Image) -> None:
    """The sum of the layers' sizes is what the filesystem grew by, within 10%."""

    def used() -> int:
        sh("btrfs", "filesystem", "sync", str(ready.root))
        out = sh("btrfs", "filesystem", "df", "-b", str(ready.root))
        return sum(
            int(line.split("used=")[1].split()[0].rstrip(","))
            for line in out.splitlines()
            if line.startswith(("Data", "Metadata"))
        )

    before = used()
    for i in range(4):
        write_mib(ready, f"new{i}", 3)
    for i in range(2):  # a file rewritten: the old version stays in its layer
        write_mib(ready, f"new{i}", 3)
    ready.ashctl(
        "run",
        "--name",
        "append",
        "--",
        "sh",
        "-c",
        f"head -c 2M /dev/urandom >> {ready.root}/opt/new2",
        check=True,
    )
    grown = used() - before
    total = ready.json("status")["size"]  # type: ignore[index]
    assert grown > 20 << 20
    assert abs(total - grown) <= grown // 10, (total, grown)
    append = next(x for x in layers(ready) if x["name"] == "append")
    assert 2 << 20 <= append["size"] < 3 << 20  # the appended part only


def test_remove_says_why_a_layer_cannot_go(ready: Image) -> None:
    write_mib(ready, "a")
    write_mib(ready, "b")
    head = ready.ashctl("remove", "b")
    assert head.returncode == 2 and "deployment's layer" in head.stderr, head.stderr
    ready.ashctl("rollback", "a", check=True)
    write_mib(ready, "side")
    # b is off the deployment's line now, and inner to nothing: a leaf, removable. a is inner
    # with a child off the line (b) and one on it (side): replay rebuilds the line only.
    ready.ashctl("pin", "a", check=True)
    assert "is pinned" in ready.ashctl("remove", "a").stderr
    ready.ashctl("unpin", "a", check=True)
    ready.ashctl("remove", "b", check=True)
    assert "b" not in [x["name"] for x in layers(ready)]


def test_diff_lists_packages_and_files(ready: Image) -> None:
    ready.ashctl(
        "run",
        "--name",
        "f",
        "--",
        "sh",
        "-c",
        f"mkdir -p {ready.root}/opt/app && echo 1 > {ready.root}/opt/app/conf",
        check=True,
    )
    out = ready.json("diff", "f", "--files")
    assert out == {
        "from": 1,
        "to": 2,
        "packages": {},  # no manager's database in this root: no manager changed anything
        "files": ["opt", "opt/app", "opt/app/conf"],
    }


def test_remove_a_leaf(ready: Image) -> None:
    ready.ashctl("run", "--name", "keep", "--", "touch", str(ready.root / "etc/keep"), check=True)
    ready.ashctl("rollback", "base", check=True)
    ready.ashctl("run", "--name", "other", "--", "touch", str(ready.root / "etc/other"), check=True)
    assert ready.ashctl("remove", "base").returncode == 2
    ready.ashctl("remove", "keep", check=True)
    assert [x["name"] for x in layers(ready)] == ["base", "other"]


def test_status_reports_a_running_transaction(ready: Image) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ashcore.cli",
            "--root",
            str(ready.root),
            "run",
            "--name",
            "slow",
            "--",
            "sleep",
            "2",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            status = ready.json("status")
            assert isinstance(status, dict)
            if status["pending"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status["pending"]["name"] == "slow"
        assert status["pending"]["alive"] is True
    finally:
        proc.wait(timeout=30)


def hook(
    img: Image, fn: str, owner: int, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """A hook process of a pretend manager `owner`, as a plugin's hook face runs it."""
    code = (
        f"import sys; from ashcore.hook import {fn}_hook as h;"
        f"sys.exit(h(root={str(img.root)!r}, plugin='test', manager='test',"
        f" argv=['test', 'install', 'x'], owner_pid={owner}, database=lambda: None))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert not check or done.returncode == 0, done.stderr
    return done


def test_a_managers_late_writes_are_its_own_a_hand_edit_of_its_database_is_drift(
    ready: Image,
) -> None:
    """A manager writes its database after its post hook (rpm checkpoints its sqlite, apt
    its extended_states): not drift. `apt-mark hold`, `rpm --justdb`, a hand edit of a
    package database after the manager exited: drift, kept as a layer of its own."""
    helper = str(Path(__file__).parents[2] / "ashcore/files/ash-commit")
    rpmdb = ready.root / "var/lib/rpm/rpmdb.sqlite"
    rpmdb.parent.mkdir(parents=True)
    late = f"echo checkpointed > {rpmdb}"  # by the manager, after its post hook
    lingering_run(ready, helper, late=late)
    assert layers(ready)[-1]["name"] == "test install x"  # ashctl waits for the helper
    assert not (ready.root / ".ash/layers/2/var/lib/rpm/rpmdb.sqlite").exists()  # sealed
    assert ready.json("status")["drift"] is False  # type: ignore[index]
    status = ready.root / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text("Package: x\nStatus: hold ok installed\n")  # apt-mark hold, later
    assert ready.json("status")["drift"] is True  # type: ignore[index]
    ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"), check=True)
    found = layers(ready)
    assert [(x["name"], x["status"]) for x in found][1:3] == [
        ("test install x", "committed"),
        ("drift: var/lib/dpkg/status", "drift"),
    ]
    assert (ready.root / f".ash/layers/{found[2]['id']}/var/lib/dpkg/status").exists()


def test_a_deployment_made_by_a_rollback_goes_when_rolled_away_from(ready: Image) -> None:
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    ready.ashctl("rollback", "base", check=True)
    first = sorted(os.listdir(ready.root / ".ash/deployments"))
    assert len(first) == 1
    ready.ashctl("rollback", "one", check=True)
    second = sorted(os.listdir(ready.root / ".ash/deployments"))
    assert len(second) == 1 and second != first  # the one rolled away from is gone
    assert (ready.root / "etc/one").exists()
    assert (ready.top / "@root").is_dir()  # the root the user made is kept
    assert ready.ashctl("doctor").returncode == 0


def test_a_rollback_never_deletes_a_nested_subvolume(ready: Image) -> None:
    import btrfsutil

    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    ready.ashctl("rollback", "base", check=True)  # the deployment is now one of the store's
    btrfsutil.create_subvolume(str(ready.root / "srv-data"))
    (ready.root / "srv-data/precious").write_text("in no layer")
    result = ready.ashctl("rollback", "one")
    assert result.returncode == 0, result.stderr
    assert "holds other subvolumes" in result.stderr
    kept = [
        d
        for d in os.listdir(ready.root / ".ash/deployments")
        if (ready.root / ".ash/deployments" / d / "srv-data/precious").exists()
    ]
    assert len(kept) == 1


def test_on_error_warn_lets_the_manager_go_on_when_no_layer_can_be_made(ready: Image) -> None:
    subprocess.run(["umount", str(ready.root / ".ash")], check=True)  # the store is gone
    (ready.root / "etc/ash/ash.toml").write_text('on_error = "warn"\n')
    manager = subprocess.Popen(["sleep", "60"])
    try:
        result = hook(ready, "begin", manager.pid, check=False)
    finally:
        manager.kill()
        manager.wait()
    assert result.returncode == 0
    assert result.stderr.startswith("ashlayers: no layer for this run: ")


def lingering_run(
    img: Image, helper: str, *, kill_child: bool = False, after: str = "", late: str = ""
) -> str:
    """A pretend manager (a shell) whose pre hook lingers and whose post hook is ash-commit,
    falling back to the Python commit as the plugins' post hooks do."""
    begin = (
        "import sys; from ashcore.hook import begin_hook, commit_hook;"
        f"kw = dict(root={str(img.root)!r}, plugin='test', manager='test',"
        " argv=['test', 'install', 'x'], owner_pid=int(sys.argv[1]), database=lambda: None);"
        "sys.exit(begin_hook(**kw, commit=lambda t: commit_hook(**kw, helper=True, helper_exit=t)))"
    )
    commit = begin.replace(
        "begin_hook(**kw, commit=lambda t: commit_hook(**kw, helper=True, helper_exit=t))",
        "commit_hook(**kw)",
    )
    kill = (
        f'read -r child owner < {img.root}/.ash/run/commit; kill -9 "${{child%%:*}}"; sleep 0.2;'
        if kill_child
        else ""
    )
    script = (
        f'"{sys.executable}" -c "$BEGIN" $$ && touch {img.root}/usr/x && {kill}'
        f'{{ {helper} {img.root}/.ash || "{sys.executable}" -c "$COMMIT" $$; }}; {late}'
    )
    done = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BEGIN": begin, "COMMIT": commit},
    )
    assert done.returncode == 0, done.stderr
    if after:
        subprocess.run(["sh", "-c", after], check=True)
    return done.stderr


def test_one_interpreter_per_operation_the_pre_hook_makes_the_layer(ready: Image) -> None:
    from pathlib import Path

    helper = str(Path(__file__).parents[2] / "ashcore/files/ash-commit")
    said = lingering_run(ready, helper)
    # The post hook waited for the seal and says which layer it is; the rest came after.
    assert [x for x in said.splitlines() if x.startswith("ashlayers:")] == [
        'ashlayers: layer 2 "test install x"'
    ], said
    found = layers(ready)  # ashctl waits while the helper makes the layer
    assert (found[-1]["id"], found[-1]["status"], found[-1]["name"]) == (
        2,
        "committed",
        "test install x",
    )
    assert (ready.root / ".ash/layers/2/usr/x").exists()
    assert 'ashlayers: layer 2 "test install x"' in (ready.root / ".ash/run/commit.out").read_text()
    # The helper is gone: the post hook falls back to the Python commit.
    said = lingering_run(ready, helper, kill_child=True)
    assert 'ashlayers: layer 3 "test install x"' in said
    assert [x["status"] for x in layers(ready)] == ["committed"] * 3
    assert ready.ashctl("doctor").returncode == 0


def test_a_begin_without_drift_imports_nothing_heavy(ready: Image) -> None:
    """What a pre hook pays on every package operation: no `re` (shlex, fnmatch, tomllib
    pull it in), no `json`, no logging; and a commit that follows is unchanged by it."""
    (ready.root / "usr/lib/__pycache__").mkdir(parents=True)
    # A fresh checkpoint.
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    (ready.root / "usr/lib/__pycache__/m.pyc").write_text("noise, by the default's glob")
    # As the hooks start Python: -I -S, the packages' folders put on the path by hand (no .pth
    # file runs, so `loaded` is only what the interpreter needs).
    path = [str(Path(__file__).resolve().parents[2])] + [p for p in sys.path if "-packages" in p]
    code = (
        "import os, sys\n"
        f"sys.path[:0] = {path!r}\n"
        "loaded = set(sys.modules)\n"
        "from ashcore.hook import begin_hook, commit_hook\n"
        f"kw = dict(root={str(ready.root)!r}, plugin='run', manager='test',\n"
        "          argv=['test', 'install', 'it s'], owner_pid=os.getpid(),\n"
        "          database=lambda: None)\n"
        "assert begin_hook(**kw) == 0\n"
        "heavy = {'re', 'json', 'shlex', 'fnmatch', 'logging', 'typing', 'subprocess', 'tomllib'}\n"
        "print(sorted(heavy & (set(sys.modules) - loaded)))\n"
        "open(kw['root'] + '/etc/made', 'w').close()\n"
        "commit_hook(**kw)\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stderr
    made = layers(ready)[-1]
    assert (made["name"], made["command"], made["status"]) == (
        "test install 'it s'",
        "test install 'it s'",
        "committed",
    )
    assert (ready.root / f".ash/layers/{made['id']}/etc/made").exists()


class StatusFile:
    """A database face that reads "name version" lines from a file of the managers' own
    state (var/lib/dpkg/status), as the real ones read dpkg's, rpm's or alpm's files."""

    PATH = "var/lib/dpkg/status"

    def state_paths(self, root: str) -> tuple[str, ...]:
        return (self.PATH,)

    def read_installed(self, root: str) -> dict[str, str]:
        path = os.path.join(root, self.PATH)
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return dict(line.split() for line in f if line.strip())

    def compare_versions(self, a: str, b: str) -> int:
        return (a > b) - (a < b)


def test_the_set_before_is_the_parent_layers_unless_the_database_changed_since(
    ready: Image,
) -> None:
    """The set before a run is read from the parent layer's snapshot after the run, off the
    manager's time; but a change to the database alone since that layer (not drift: a
    manager writes its files as it starts) makes the begin read it then, so that no layer's
    delta shows what another run did."""
    from ashcore.lifecycle import Operation, begin, commit
    from ashcore.process import owner_of
    from ashcore.target import Target

    status = ready.root / StatusFile.PATH
    status.parent.mkdir(parents=True)
    status.write_text("a 1\n")
    target, db = Target(str(ready.root)), StatusFile()

    def one_run(package: str, hand_edit: str | None = None) -> tuple[str | None, object]:
        if hand_edit:
            with open(status, "a") as f:
                f.write(f"{hand_edit} 1\n")  # rpm --justdb, dpkg under ASH_SKIP...
        op = Operation(
            "test", "test", ("test", "install", package), owner_of(os.getpid()), reopen=False
        )
        begin(target, op, db)
        recorded = target.store.pending()["before"]  # type: ignore[index]
        with open(status, "a") as f:
            f.write(f"{package} 1\n")
        layer = commit(target, op, db)
        assert layer is not None
        return recorded, layer.packages.added

    one_run("b")  # the head is now a manager's layer
    assert one_run("c") == (None, (("c", "1"),))  # read after the run, from the parent
    recorded, added = one_run("d", hand_edit="x")
    assert recorded is not None and "x" in recorded  # read by the begin: the file changed
    assert added == (("d", "1"),)
    assert [x["status"] for x in layers(ready)][-3:] == ["committed"] * 3  # no drift layer


def test_a_hook_warns_when_space_runs_low_and_deletes_nothing(ready: Image) -> None:
    conf = ready.root / "etc/ash/ash.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('[retention]\nwarn_free = "100T"\n')  # kept as a drift layer, first
    write_mib(ready, "a", 2)
    write_mib(ready, "b", 1)
    manager = subprocess.Popen(["sleep", "60"])
    code = (
        "import sys; from ashcore.hook import begin_hook, commit_hook;"
        f"r = begin_hook(root={str(ready.root)!r}, plugin='test', manager='test',"
        f" argv=['test', 'install', 'x'], owner_pid={manager.pid}, database=lambda: None);"
        f"open({str(ready.root / 'etc/x')!r}, 'w').write('x');"
        f"commit_hook(root={str(ready.root)!r}, plugin='test', manager='test',"
        f" argv=['test', 'install', 'x'], owner_pid={manager.pid}, database=lambda: None);"
        "sys.exit(r)"
    )
    try:
        hook = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    finally:
        manager.kill()
    assert hook.returncode == 0, hook.stderr
    warning = [line for line in hook.stderr.splitlines() if "free on" in line]
    assert len(warning) == 1, hook.stderr
    # a (2M) can be pruned; b is the deployment's layer when the operation began.
    assert "the layers hold 3.0M, of which up to 2.0M can be pruned" in warning[0], warning
    assert "ashctl prune --max-size" in warning[0]
    statuses = [x["status"] for x in layers(ready)]
    assert statuses == ["committed", "drift", "committed", "committed", "committed"]  # all kept
    conf.write_text('[retention]\nwarn_free = "1M"\n')
    quiet = ready.ashctl("run", "--", "touch", str(ready.root / "etc/y"), check=True)
    assert "free on" not in quiet.stderr


def test_plain_doctor_changes_nothing_and_repair_closes(ready: Image) -> None:
    """A run killed mid-way leaves a pending operation: plain doctor only says so."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ashcore.cli",
            "--root",
            str(ready.root),
            "run",
            "--name",
            "cut",
            "--",
            "sh",
            "-c",
            f"touch {ready.root}/etc/cut; sleep 60",
        ],
    )
    for _ in range(200):
        if (ready.root / "etc/cut").exists():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(["pkill", "-KILL", "-f", f"touch {ready.root}/etc/cut; sleep 60"], check=False)
    before = [x["status"] for x in layers(ready)]
    plain = ready.ashctl("doctor")
    assert plain.returncode == 1 and "was not closed" in plain.stdout, plain.stdout
    assert [x["status"] for x in layers(ready)] == before  # nothing changed
    repaired = ready.ashctl("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert layers(ready)[-1]["status"] == "interrupted"
