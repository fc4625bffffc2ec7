"""Replay on the btrfs tier: layers replayed as their file changes (drift, `ashctl run`);
the managers' own replay is proven in tests/e2e/test_replay.py."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from typing import Any

import pytest

from tests.btrfs.conftest import Image, left_on_host

pytestmark = pytest.mark.btrfs


def run(img: Image, name: str, script: str) -> None:
    img.ashctl("run", "--name", name, "--", "sh", "-c", script, check=True)


def layers(img: Image) -> list[dict[str, object]]:
    found = img.json("list")
    assert isinstance(found, list)
    return found


def test_remove_an_inner_layer_replays_the_later_ones_as_their_file_changes(
    ready: Image,
) -> None:
    r = ready.root
    # What a real root has, and the stage needs as mount points.
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run {r}/etc")
    run(ready, "a", f"echo 1 > {r}/etc/a")
    run(ready, "b", f"echo 2 > {r}/etc/b")
    run(ready, "c", f"echo 3 > {r}/etc/c; chmod 600 {r}/etc/a; rm {r}/etc/b")
    (r / "etc/by-hand").write_text("drift")  # kept as a drift layer, replayed too
    by_name = {x["name"]: x["id"] for x in layers(ready)}
    dry = ready.ashctl("remove", "b", "--dry-run", check=True).stdout
    assert f'would replay layer {by_name["c"]} "c": its file changes' in dry, dry
    assert (r / "etc/by-hand").exists() and len(layers(ready)) == 5  # nothing changed
    out = ready.ashctl("remove", "b", check=True)
    assert "removed layer" in out.stdout and "2 layers replayed" in out.stdout, out
    # The root is a's line with c and the hand edit on top, without b.
    assert (r / "etc/a").read_text() == "1\n"
    assert stat.S_IMODE(os.stat(r / "etc/a").st_mode) == 0o600
    assert (r / "etc/c").read_text() == "3\n"
    assert not (r / "etc/b").exists()
    assert (r / "etc/by-hand").read_text() == "drift"
    found = {x["id"]: x for x in layers(ready)}
    status = ready.json("status")
    head = found[status["layer"]]  # type: ignore[index]
    assert head["name"].startswith("drift")
    new_c = found[head["parent"]]
    assert new_c["name"] == "c" and new_c["parent"] == by_name["a"]
    assert found[by_name["c"]]["replaced_by"] == new_c["id"]  # the old line says so
    assert found[by_name["b"]]["status"] == "committed"  # kept until pruned...
    assert found[by_name["b"]]["replaced_by"] == head["id"]  # ...marked replaced by the tip
    listed = ready.ashctl("list", check=True).stdout.splitlines()
    assert next(x for x in listed if x.split()[0] == str(by_name["b"])).split()[2] == "replaced"
    assert status["drift"] is False  # type: ignore[index]
    assert ready.ashctl("doctor").returncode == 0
    assert not list((ready.dir).glob("**/.ash-swap-*"))
    assert not left_on_host(r / ".ash")  # only this store's own folder: others may run


def test_remove_refuses_what_replay_cannot_do(ready: Image) -> None:
    r = ready.root
    run(ready, "a", f"echo 1 > {r}/etc-a")
    run(ready, "b", f"echo 2 > {r}/etc-b")
    head = ready.ashctl("remove", "b")
    assert head.returncode == 2 and "deployment's layer" in head.stderr
    ready.ashctl("prune", "--keep", "0", check=True)  # a's snapshot goes: b cannot be replayed
    gone = ready.ashctl("remove", "a")
    assert gone.returncode == 2 and "pruned" in gone.stderr, gone.stderr
    assert (r / "etc-b").exists()


def test_a_replay_killed_at_any_point_is_finished_or_undone(ready: Image) -> None:
    """SIGKILL at about 30 points of `remove` (its replay and switch): `doctor --repair` then
    leaves either the old line or the new one, whole, with no stage, mount or layer left."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.btrfs.test_crash import assert_consistent

    r = ready.root
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run {r}/etc")

    def crashrun(limit: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tests.btrfs.crashrun", str(limit), "--root", str(r), *args],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "ASH_CRASH_ONLY": "replay,rollback,deployments,mounts,stage"},
        )

    def line(i: int) -> None:
        run(ready, f"a{i}", f"echo {i} > {r}/etc/a{i}")
        run(ready, f"b{i}", f"echo {i} > {r}/etc/b{i}")
        run(ready, f"c{i}", f"echo {i} > {r}/etc/c{i}")

    line(0)
    counted = crashrun(0, "remove", "b0")
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.rsplit("LINES ", 1)[1])
    assert not (r / "etc/b0").exists()
    kills = outcomes_new = outcomes_old = 0
    for i, limit in enumerate(range(1, total + 1, max(1, total // 30)), 1):
        line(i)
        result = crashrun(limit, "remove", f"b{i}")
        kills += result.returncode == -signal.SIGKILL
        if result.returncode != -signal.SIGKILL:
            assert result.returncode == 0, (limit, result.stderr)
        doctor = ready.ashctl("doctor", "--repair")
        assert doctor.returncode == 0, (limit, doctor.stdout, doctor.stderr)
        assert_consistent(ready)
        assert (r / f"etc/a{i}").exists() and (r / f"etc/c{i}").exists(), limit
        outcomes_new += not (r / f"etc/b{i}").exists()
        outcomes_old += (r / f"etc/b{i}").exists()
        assert not left_on_host(r / ".ash"), limit
        assert not list(r.parent.glob(".ash-swap-*")), limit
        assert len(list((r / ".ash/deployments").iterdir())) <= 1, limit
        assert ready.json("status")["drift"] is False  # type: ignore[index]
    assert kills >= 15 and outcomes_new and outcomes_old, (kills, outcomes_new, outcomes_old)


def test_a_replay_takes_no_snapshot_of_a_manager_that_began_on_the_root_meanwhile(
    ready: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An apt started on the root while a replay runs: the replay's last drift check would
    snapshot dpkg mid-way (a drift layer holding dpkg's tmp.ci). It refuses instead, and
    keeps no drift layer of the manager's half-done state."""
    from ashcore import replay
    from ashcore.errors import UsageError
    from ashcore.lifecycle import Operation, begin
    from ashcore.process import owner_of
    from ashcore.target import Target

    r = ready.root
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run {r}/etc")
    run(ready, "a", f"echo 1 > {r}/etc/a")
    run(ready, "b", f"echo 2 > {r}/etc/b")
    run(ready, "c", f"echo 3 > {r}/etc/c")
    manager = subprocess.Popen(["sleep", "120"])
    real = replay._replay_files

    def replay_files(*args: Any) -> list[str]:
        left = real(*args)
        op = Operation(
            origin="apt",
            manager="apt",
            argv=("apt-get", "install", "x"),
            owner=owner_of(manager.pid),
        )
        begin(Target(str(r)), op, None)  # the manager's pre hook, on the live root
        (r / "var/lib/dpkg/tmp.ci").mkdir(parents=True)
        (r / "var/lib/dpkg/tmp.ci/postinst").write_text("#!/bin/sh\n")  # dpkg, mid-way
        return left

    monkeypatch.setattr(replay, "_replay_files", replay_files)
    target = Target(str(r))
    by_name = {x["name"]: x["id"] for x in layers(ready)}
    deployments = sorted((r / ".ash/deployments").iterdir())
    started = time.monotonic()
    try:
        with pytest.raises(UsageError):
            replay.rebuild(
                target,
                target.store.get(int(str(by_name["a"]))),
                target.store.get(int(str(by_name["c"]))),
                lambda line: None,
            )
    finally:
        manager.kill()
        manager.wait()
    assert [x["status"] for x in layers(ready) if x["status"] == "drift"] == []
    assert (r / "etc/b").exists()  # nothing was replaced
    # Undone at once, under the lock the refusal holds (not after waiting lock_timeout for it).
    assert sorted((r / ".ash/deployments").iterdir()) == deployments
    assert time.monotonic() - started < 120


def test_an_immutable_file_stops_a_replay_with_its_own_one_line_cause(ready: Image) -> None:
    r = ready.root
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run {r}/etc")
    run(ready, "lock", f"echo old > {r}/etc/locked; chattr +i {r}/etc/locked")
    run(ready, "a", f"echo 1 > {r}/etc/a")
    run(
        ready,
        "edit",
        f"chattr -i {r}/etc/locked; echo new > {r}/etc/locked; chattr +i {r}/etc/locked",
    )
    try:
        out = ready.ashctl("remove", "a")
        assert out.returncode == 1, (out.stdout, out.stderr)
        said = out.stderr.strip().splitlines()
        assert said[-1].startswith("ashctl: cannot replay /etc/locked: Operation not permitted"), (
            said
        )
        assert "internal error" not in out.stderr and "Traceback" not in out.stderr
        assert (r / "etc/a").exists()  # nothing replaced
    finally:
        subprocess.run(["chattr", "-R", "-i", str(r / "etc"), str(r / ".ash/layers")], check=False)
