"""Replay on the btrfs tier: layers replayed as their file changes (drift, `ashctl run`);
the managers' own replay is proven in tests/e2e/test_replay.py."""

from __future__ import annotations

import os
import stat

import pytest

from tests.btrfs.conftest import Image

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
    assert found[by_name["b"]]["status"] == "committed"  # kept until pruned
    assert status["drift"] is False  # type: ignore[index]
    assert ready.ashctl("doctor").returncode == 0
    assert not list((ready.dir).glob("**/.ash-swap-*"))
    assert not os.path.exists("/run/ashlayers") or not os.listdir("/run/ashlayers")


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
