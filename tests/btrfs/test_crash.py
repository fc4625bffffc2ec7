"""Crash safety: SIGKILL at about 80 points spread over the traced lines of begin and commit.

After each kill, `doctor` closes what was left, the store is consistent (every snapshot has
its record and every record its snapshot, manifests match), and the next transaction works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.btrfs.conftest import Image, sh

pytestmark = pytest.mark.btrfs


def crashrun(img: Image, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.btrfs.crashrun", str(limit), "--root", str(img.root), *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )


def assert_consistent(img: Image) -> None:
    layers_dir = img.root / ".ash/layers"
    records = {x["id"]: x for x in img.json("list")}  # type: ignore[union-attr]
    snapshots = {int(p.name) for p in layers_dir.iterdir() if p.name.isdigit()}
    assert snapshots == set(records), (snapshots, set(records))
    for layer_id, record in records.items():
        manifest = json.loads((layers_dir / f"{layer_id}.json").read_text())
        assert manifest["uuid"] == record["uuid"]
        assert manifest["status"] == record["status"]
    assert not any(
        p.name.endswith(".partial") or p.name.startswith("probe") for p in layers_dir.iterdir()
    )
    assert img.json("status")["pending"] is None  # type: ignore[index]


def test_sigkill_at_every_step_of_begin_and_commit(ready: Image) -> None:
    (ready.root / "etc/drift").write_text("0")
    probe = crashrun(
        ready, 0, "run", "--name", "probe", "--", "touch", str(ready.root / "etc/probe")
    )
    assert probe.returncode == 0, probe.stderr
    total = int(probe.stderr.rsplit("LINES ", 1)[1])
    assert total > 50
    kills = 0
    step = max(1, total // 80)
    for limit in range(1, total + 1, step):
        (ready.root / "etc/drift").write_text(str(limit))  # so that the drift path runs too
        result = crashrun(
            ready,
            limit,
            "run",
            "--name",
            f"k{limit}",
            "--",
            "touch",
            str(ready.root / f"etc/k{limit}"),
        )
        if result.returncode == -signal.SIGKILL:
            kills += 1
        doctor = ready.ashctl("doctor", "--repair")
        assert doctor.returncode == 0, (limit, doctor.stdout, doctor.stderr)
        assert_consistent(ready)
    assert kills >= 30
    ready.ashctl("run", "--name", "after", "--", "touch", str(ready.root / "etc/after"), check=True)
    assert ready.json("list")[-1]["name"] == "after"  # type: ignore[index]
    assert_consistent(ready)


def crashrun_env(
    img: Image, limit: int, only: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"ASH_CRASH_ONLY": only} if only else {})}
    return subprocess.run(
        [sys.executable, "-m", "tests.btrfs.crashrun", str(limit), "--root", str(img.root), *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        env=env,
    )


def mounts_by_target() -> dict[str, tuple[str, str]]:
    """mount point -> (fstype, path inside the filesystem), the last mount on each point."""
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            found[fields[4]] = (right.split()[0], fields[3])
    return found


def assert_switched_whole(img: Image) -> str:
    """The root is one mount with everything below it in place, nothing half moved, and no
    deployment left that nothing uses. Returns the subvolume mounted at the root."""
    found = mounts_by_target()
    root = str(img.root)
    assert found[root][0] == "btrfs", found.get(root)
    assert found[root + "/.ash"] == ("btrfs", "/@ash"), found.get(root + "/.ash")
    assert found[root + "/tmp"][0] == "tmpfs", "the submount was not moved across"
    assert (img.root / "tmp/marker").exists()
    assert not any(t.startswith(str(img.dir)) and ".ash-swap" in t for t in found), found
    assert not list(img.root.parent.glob(".ash-swap-*"))
    assert not (img.root / ".ash/rollback.json").exists()
    subvol = found[root][1]
    deployments = {p.name for p in (img.root / ".ash/deployments").iterdir()}
    mounted = {subvol.rsplit("/", 1)[1]} if subvol.startswith("/@ash/deployments/") else set()
    assert deployments == mounted, (deployments, subvol)
    return subvol


@pytest.mark.parametrize(
    "only", [None, "rollback,deployments,mounts,caches"], ids=["spread", "switch"]
)
def test_sigkill_at_every_step_of_rollback(ready: Image, only: str | None) -> None:
    """A rollback killed at any line (about 60 points spread over all its traced lines, then
    60 over the modules of the switch alone: rollback, mounts, caches) is finished or undone by
    the next run: mounts whole, store consistent, no
    deployment leaked, and the root is one of the two layers, never something between."""
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    (ready.root / "tmp").mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(ready.root / "tmp")], check=True)
    (ready.root / "tmp/marker").write_text("a submount that must move with the root")
    counted = crashrun_env(ready, 0, only, "rollback", "base")
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.rsplit("LINES ", 1)[1])
    assert total > 20
    assert_switched_whole(ready)
    kills, outcomes, cut_switch, cut_journal = 0, set(), 0, 0
    step = max(1, total // 60)
    for limit in range(1, total + 1, step):
        current = ready.json("status")["layer"]  # type: ignore[index]
        goal = "one" if current == 1 else "base"
        goal_id = 2 if goal == "one" else 1
        result = crashrun_env(ready, limit, only, "rollback", goal)
        if result.returncode == -signal.SIGKILL:
            kills += 1
            cut_switch += bool(list(ready.root.parent.glob(".ash-swap-*")))
            cut_journal += (ready.root / ".ash/rollback.json").exists() or bool(
                list(ready.root.parent.glob(".ash-swap-*"))
            )
        else:
            assert result.returncode == 0, (limit, result.stderr)
        doctor = ready.ashctl("doctor", "--repair")
        assert doctor.returncode == 0, (limit, doctor.stdout, doctor.stderr)
        assert_switched_whole(ready)
        assert_consistent(ready)
        now = ready.json("status")["layer"]  # type: ignore[index]
        assert now in (current, goal_id), (limit, current, now)
        assert (ready.root / "etc/one").exists() == (now == 2), (limit, now)
        outcomes.add("finished" if now == goal_id else "undone")
    assert kills >= min(30, total // step // 2), (kills, total)
    assert cut_journal >= 5, "no kill came while a rollback was under way"
    assert outcomes == {"finished", "undone"}, outcomes
    if only:
        assert cut_switch >= 3, "no kill came inside the switch of the mounts"
    ready.ashctl("rollback", "one", check=True)
    assert (ready.root / "etc/one").exists()
    assert_switched_whole(ready)
    subprocess.run(["umount", str(ready.root / "tmp")], check=True)


def test_a_manager_killed_between_begin_and_commit_is_closed_as_interrupted(
    ready: Image,
) -> None:
    manager = subprocess.Popen(["sleep", "60"])
    code = (
        "import sys; from ashcore.hook import begin_hook;"
        f"sys.exit(begin_hook(root={str(ready.root)!r}, plugin='test', manager='test',"
        f" argv=['test', 'install', 'x'], owner_pid={manager.pid}, database=lambda: None))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    (ready.root / "etc/half-done").write_text("the manager changed this, then died")
    status = ready.json("status")
    assert status["pending"]["alive"] is True  # type: ignore[index]
    manager.send_signal(signal.SIGKILL)
    manager.wait()
    assert ready.json("status")["pending"]["alive"] is False  # type: ignore[index]
    # The next transaction closes it first.
    ready.ashctl("run", "--name", "next", "--", "touch", str(ready.root / "etc/next"), check=True)
    found = ready.json("list")
    assert [(x["name"], x["status"]) for x in found[1:]] == [  # type: ignore[index]
        ("test install x", "interrupted"),
        ("next", "committed"),
    ]
    assert (ready.root / ".ash/layers/2/etc/half-done").exists()
    assert_consistent(ready)


def test_doctor_closes_an_interrupted_transaction(ready: Image) -> None:
    manager = subprocess.Popen(["sleep", "60"])
    code = (
        "import sys; from ashcore.hook import begin_hook;"
        f"sys.exit(begin_hook(root={str(ready.root)!r}, plugin='test', manager='test',"
        f" argv=['test'], owner_pid={manager.pid}, database=lambda: None))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    os.kill(manager.pid, signal.SIGKILL)
    manager.wait()
    plain = ready.ashctl("doctor")  # says so, changes nothing
    assert plain.returncode == 1 and "was not closed" in plain.stdout, plain.stdout
    assert ready.ashctl("doctor", "--repair").returncode == 0
    assert ready.json("list")[-1]["status"] == "interrupted"  # type: ignore[index]
    assert_consistent(ready)


def test_doctor_repair_rebuilds_a_lost_database(ready: Image) -> None:
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    before = ready.json("list")
    for suffix in ("", "-wal", "-shm"):
        (ready.root / f".ash/ash.db{suffix}").unlink(missing_ok=True)
    (ready.root / ".ash/ash.db").write_bytes(b"garbage" * 100)
    broken = ready.ashctl("list")
    assert broken.returncode == 1 and "doctor --repair" in broken.stderr
    mended = ready.ashctl("doctor", "--repair")
    assert mended.returncode == 0 and "not mended" not in mended.stdout  # all mended at once
    assert "moved aside" in mended.stderr  # and it says what it did
    assert ready.ashctl("doctor").returncode == 0
    after = ready.json("list")
    assert [(x["id"], x["name"], x["status"], x["uuid"]) for x in after] == [  # type: ignore[union-attr]
        (x["id"], x["name"], x["status"], x["uuid"])
        for x in before  # type: ignore[union-attr]
    ]
    assert ready.json("status")["layer"] == 2  # type: ignore[index]


def test_doctor_repair_keeps_a_snapshot_whose_manifest_was_lost(ready: Image) -> None:
    ready.ashctl("run", "--name", "one", "--", "touch", str(ready.root / "etc/one"), check=True)
    (ready.root / ".ash/layers/2.json").unlink()
    for suffix in ("", "-wal", "-shm"):
        (ready.root / f".ash/ash.db{suffix}").unlink(missing_ok=True)
    ready.ashctl("doctor", "--repair")
    assert ready.ashctl("doctor").returncode == 0
    found = ready.json("list")
    assert [(x["id"], x["status"]) for x in found] == [(1, "committed"), (2, "interrupted")]  # type: ignore[union-attr]
    assert (ready.root / ".ash/layers/2/etc/one").exists()
    assert_consistent(ready)


def manager_layer(img: Image, name: str) -> None:
    """A layer made by a (pretend) package manager through the hooks, as plugins make them."""
    manager = subprocess.Popen(["sleep", "60"])
    try:
        for fn in ("begin", "commit"):
            code = (
                f"import sys; from ashcore.hook import {fn}_hook as h;"
                f"sys.exit(h(root={str(img.root)!r}, plugin='test', manager='test',"
                f" argv=['test', {name!r}], owner_pid={manager.pid}, database=lambda: None))"
            )
            assert subprocess.run([sys.executable, "-c", code]).returncode == 0
            if fn == "begin":
                (img.root / "usr").mkdir(exist_ok=True)
                (img.root / "usr" / name).write_text(name)
    finally:
        manager.kill()
        manager.wait()


def test_sigkill_at_a_begin_after_writes_to_a_managers_database(ready: Image) -> None:
    late = ready.root / "var/lib/rpm/rpmdb.sqlite"
    late.parent.mkdir(parents=True)
    manager_layer(ready, "probe")
    late.write_text("probe")
    total = int(
        crashrun(
            ready, 0, "run", "--name", "r0", "--", "touch", str(ready.root / "etc/r0")
        ).stderr.rsplit("LINES ", 1)[1]
    )
    kills = 0
    for limit in range(1, total + 1, max(1, total // 40)):
        manager_layer(ready, f"m{limit}")
        late.write_text(str(limit))  # the manager's database, written between runs: not drift
        result = crashrun(
            ready,
            limit,
            "run",
            "--name",
            f"r{limit}",
            "--",
            "touch",
            str(ready.root / f"etc/r{limit}"),
        )
        kills += result.returncode == -signal.SIGKILL
        assert ready.ashctl("doctor", "--repair").returncode == 0
        assert_consistent(ready)
        layer = next(x for x in ready.json("list") if x["name"] == f"test m{limit}")  # type: ignore[union-attr]
        assert layer["status"] == "committed", (limit, layer)
        assert (ready.root / f".ash/layers/{layer['id']}/usr/m{limit}").exists()
    assert kills >= 20


def test_a_kill_while_a_seal_sheds_its_lock_files_keeps_the_seal(ready: Image) -> None:
    """`describe` makes a sealed snapshot writable for a moment to remove lock files; a kill
    then leaves it writable. Recovery finishes that and keeps the sealed state: not the
    root as it is later."""
    from ashcore.lifecycle import Operation, begin, seal
    from ashcore.recovery import recover
    from ashcore.target import Target

    target = Target(str(ready.root))
    op = Operation("test", "test", ("test", "install", "x"), "1:1")  # an owner that is gone
    begin(target, op, None)
    (ready.root / "usr").mkdir(exist_ok=True)
    (ready.root / "usr/x").write_text("sealed")
    assert seal(target, op) is not None
    pending = target.store.pending()
    assert pending is not None
    partial = target.store.partial_path(pending["id"])
    target.fs.set_read_only(partial, False)  # the kill came inside _drop_lock_files
    (ready.root / "etc/after").write_text("written after the manager went on")
    with target.store.locked(10):
        layer = recover(target, pending, None)
    assert layer is not None and layer.status.value == "committed"
    kept = Path(target.store.layer_path(layer.id))
    assert (kept / "usr/x").exists() and not (kept / "etc/after").exists()
    assert target.fs.is_read_only(str(kept))
    target.store.close()


def test_doctor_finds_deployments_nothing_uses(ready: Image) -> None:
    """What killed rollbacks of earlier versions left: doctor reports each; --repair deletes
    one unchanged since it was made, and keeps (and names) one that changed."""
    deployments = ready.root / ".ash/deployments"
    deployments.mkdir(exist_ok=True)
    for name in ("7-layer1", "8-layer1"):
        sh(
            "btrfs",
            "subvolume",
            "snapshot",
            str(ready.root / ".ash/layers/1"),
            str(deployments / name),
        )
    (deployments / "8-layer1/etc/edited").write_text("a change no layer has")
    doctor = ready.ashctl("doctor")
    assert doctor.returncode == 1
    assert "deployment 7-layer1 is unused and unchanged" in doctor.stdout, doctor.stdout
    assert "deployment 8-layer1 is unused but changed" in doctor.stdout, doctor.stdout
    repaired = ready.ashctl("doctor", "--repair")
    assert repaired.returncode == 1, repaired.stdout  # the changed one is left to the user
    assert "deleted unused deployment 7-layer1" in repaired.stderr, repaired.stderr
    assert not (deployments / "7-layer1").exists()
    assert (deployments / "8-layer1/etc/edited").read_text() == "a change no layer has"
