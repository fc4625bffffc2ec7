"""Compose and explain on the btrfs tier, with `ashctl run` layers: blame from the kept
change lists, labels, and a line that is not deployed rebased onto another layer. The
managers' own answers (owners, replays) are proven in tests/e2e/test_compose.py."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.btrfs.conftest import Image

pytestmark = pytest.mark.btrfs


def run(img: Image, name: str, script: str) -> int:
    img.ashctl("run", "--name", name, "--", "sh", "-c", script, check=True)
    return ids(img)[name]


def ids(img: Image) -> dict[str, int]:
    found = img.json("list")
    assert isinstance(found, list)
    return {x["name"]: x["id"] for x in found if x["replaced_by"] is None}


def blamed(img: Image, *args: str) -> dict[str, Any]:
    found = img.json("blame", *args)
    assert isinstance(found, dict)
    return found


def test_blame_names_the_layers_that_changed_a_path_newest_first(ready: Image) -> None:
    r = ready.root
    a = run(ready, "a", f"echo 1 > {r}/etc/x")
    b = run(ready, "b", f"echo 1 > {r}/etc/y")
    c = run(ready, "c", f"echo 2 > {r}/etc/x")
    d = run(ready, "d", f"rm {r}/etc/x")
    changes = r / ".ash/layers"
    assert all((changes / f"{i}.changes").exists() for i in (a, b, c, d))  # kept as measured
    found = blamed(ready, "/etc/x")
    assert [x["id"] for x in found["layers"]] == [d, c, a]
    assert [x["removed"] for x in found["layers"]] == [True, False, False]
    assert found["path"] == "/etc/x" and found["unknown"] == []
    assert found["layers"][1]["paths"] == ["/etc/x"] and found["layers"][1]["name"] == "c"
    folder = blamed(ready, "etc")  # a folder: what it holds; relative means the same
    assert {d, c, b, a} <= {x["id"] for x in folder["layers"]}
    assert folder["layers"][-1]["base"] is True  # /etc was there when set up
    assert blamed(ready, "/etc/nothing-here")["layers"] == []
    text = ready.ashctl("blame", "/etc/x", check=True).stdout.splitlines()
    assert text[0] == "/etc/x: 3 layers, newest first", text
    assert text[1].startswith("*") and "d" in text[1] and "removed it" in text[1], text

    # Another branch: blame follows the deployment's line; --all every branch.
    ready.ashctl("rollback", str(a), check=True)
    e = run(ready, "e", f"echo 3 > {r}/etc/x")
    assert [x["id"] for x in blamed(ready, "/etc/x")["layers"]] == [e, a]
    assert [x["id"] for x in blamed(ready, "/etc/x", "--all")["layers"]] == [e, d, c, a]

    # A list lost (or a layer from before lists were kept) is taken again, and kept.
    (changes / f"{c}.changes").unlink()
    assert c in [x["id"] for x in blamed(ready, "/etc/x", "--all")["layers"]]
    assert (changes / f"{c}.changes").exists()
    # Pruning keeps a layer's list (taken first if it had none): its history stays.
    (changes / f"{c}.changes").unlink()
    ready.ashctl("prune", "--keep", "0", check=True)
    assert ids(ready) and not (changes / str(c)).exists()
    assert c in [x["id"] for x in blamed(ready, "/etc/x", "--all")["layers"]]
    # Pruned and without a list: said to be unknown, not silently missed.
    (changes / f"{c}.changes").unlink()
    gone = blamed(ready, "/etc/x", "--all")
    assert c in gone["unknown"] and c not in [x["id"] for x in gone["layers"]]
    assert (
        "were pruned before their changes were kept"
        in ready.ashctl("blame", "--all", "/etc/x", check=True).stdout
    )
    assert ready.ashctl("doctor").returncode == 0  # the lists are no stray files
    # A torn list is taken again, never believed.
    (changes / f"{e}.changes").write_bytes(b"ashlayers-changes 1 ")
    assert e in [x["id"] for x in blamed(ready, "/etc/x")["layers"]]


def test_blame_of_a_removed_leaf_forgets_its_list(ready: Image) -> None:
    r = ready.root
    a = run(ready, "a", f"echo 1 > {r}/etc/x")
    ready.ashctl("rollback", "1", check=True)
    ready.ashctl("remove", str(a), check=True)
    assert not (r / f".ash/layers/{a}.changes").exists()
    bad = ready.ashctl("blame", "")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr


def test_labels_name_a_layer_everywhere_a_layer_is_named(ready: Image) -> None:
    r = ready.root
    a = run(ready, "a", f"echo 1 > {r}/etc/a")
    b = run(ready, "b", f"echo 1 > {r}/etc/b")
    out = ready.ashctl("label", str(a), "mail", check=True).stdout
    assert f"labelled layer {a}" in out
    ready.ashctl("label", "b", "desktop", check=True)
    assert ready.json("show", "mail")["id"] == a  # type: ignore[index]
    assert ready.json("show", "desktop")["labels"] == ["desktop"]  # type: ignore[index]
    listed = {x["id"]: x["labels"] for x in ready.json("list")}  # type: ignore[union-attr]
    assert listed[a] == ["mail"] and listed[b] == ["desktop"] and listed[1] == []
    assert "a (mail)" in ready.ashctl("list", check=True).stdout
    assert f"{b} b (desktop) [" in ready.ashctl("tree", check=True).stdout
    assert ready.json("status")["labels"] == ["desktop"]  # type: ignore[index]
    assert "layer: 3 (desktop)" in ready.ashctl("status", check=True).stdout
    assert ready.json("label") == {"mail": a, "desktop": b}
    # A label is unique, is not a name of another layer, and reads as no id.
    taken = ready.ashctl("label", str(b), "mail")
    assert taken.returncode == 2 and f"is on layer {a}" in taken.stderr, taken.stderr
    assert taken.stderr.count("\n") == 1
    ready.ashctl("label", "--force", str(b), "mail", check=True)
    assert ready.json("show", "mail")["id"] == b  # type: ignore[index]
    for bad in ("12", "a..b", "x/y", "with space"):
        refused = ready.ashctl("label", str(a), bad)
        assert refused.returncode == 2 and "not a label" in refused.stderr, (bad, refused.stderr)
    clash = ready.ashctl("label", str(b), "a")
    assert clash.returncode == 2 and "named 'a'" in clash.stderr, clash.stderr
    # A name given later that is a label: refused as ambiguous, in one line with a hint.
    c = run(ready, "desktop", f"echo 1 > {r}/etc/c")
    ambiguous = ready.ashctl("show", "desktop")
    assert ambiguous.returncode == 1 and "the label of layer" in ambiguous.stderr
    assert f"use an id: {b} or {c}" in ambiguous.stderr and ambiguous.stderr.count("\n") == 1
    # Carried by export: the recipe gives each its labels.
    recipe = ready.dir / "recipe.toml"
    ready.ashctl("export", "b", "-o", str(recipe), check=True)
    assert 'name = "b"\nlabels = ["desktop", "mail"]\n' in recipe.read_text()
    # Kept in the manifest: a lost database is rebuilt with them.
    for suffix in ("", "-wal", "-shm"):
        (r / f".ash/ash.db{suffix}").unlink(missing_ok=True)
    ready.ashctl("doctor", "--repair")
    assert ready.json("label") == {"mail": b, "desktop": b}
    ready.ashctl("label", "--remove", "mail", check=True)
    assert ready.json("label") == {"desktop": b}
    gone = ready.ashctl("label", "--remove", "mail")
    assert gone.returncode == 2 and "no label 'mail'" in gone.stderr
    which = ready.ashctl("label", "--remove")
    assert which.returncode == 2 and "which label?" in which.stderr
    alone = ready.ashctl("label", str(b))
    assert alone.returncode == 2 and "needs a layer and a name" in alone.stderr
    # A layer deleted takes its labels with it.
    ready.ashctl("label", str(c), "top", check=True)
    ready.ashctl("rollback", str(b), check=True)
    ready.ashctl("remove", str(c), check=True)
    assert "top" not in ready.json("label")  # type: ignore[operator]


def test_a_line_not_deployed_is_rebased_as_a_new_branch(ready: Image) -> None:
    r = ready.root
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run")
    m1 = run(ready, "m1", f"echo mail > {r}/etc/mail")
    m2 = run(ready, "m2", f"echo more > {r}/etc/mail2")
    ready.ashctl("label", str(m2), "mail", check=True)
    ready.ashctl("rollback", str(ids(ready)["dirs"]), check=True)
    d1 = run(ready, "d1", f"echo desk > {r}/etc/desk")
    off = ready.ashctl("remove", str(m1), "--dry-run")  # as before: remove is the line's
    assert off.returncode == 2
    dry = ready.ashctl("rebase", str(m1), "--onto", "d1", "--dry-run", check=True).stdout
    assert "would rebuild a new branch on layer" in dry and f'layer {m2} "m2"' in dry, dry
    out = ready.ashctl("rebase", "m1", "--onto", str(d1), check=True).stdout
    assert "2 layers replayed" in out and "a new branch, not deployed" in out, out
    tip = int(out.strip().splitlines()[-1].removeprefix("tip: layer "))
    assert ready.json("status")["layer"] == d1  # type: ignore[index]
    assert not (r / "etc/mail").exists()  # the root is untouched
    found = {x["id"]: x for x in ready.json("list")}  # type: ignore[union-attr]
    new_m1 = found[tip]["parent"]
    assert found[tip]["name"] == "m2" and found[new_m1]["name"] == "m1"
    assert found[new_m1]["parent"] == d1
    assert found[m1]["replaced_by"] == new_m1 and found[m2]["replaced_by"] == tip
    assert found[tip]["labels"] == ["mail"]  # the label moved with the rebase
    snap = r / ".ash/layers" / str(tip)
    assert (snap / "etc/desk").read_text() == "desk\n"
    assert (snap / "etc/mail").read_text() == "mail\n"
    assert (snap / "etc/mail2").read_text() == "more\n"
    assert not list((r / ".ash/deployments").glob(f"*{new_m1}*"))
    assert ready.ashctl("doctor").returncode == 0
    # A line that branches needs its tip named; --deploy switches to the result.
    ready.ashctl("rollback", str(tip), check=True)
    side = run(ready, "side", f"echo s > {r}/etc/side")
    ready.ashctl("rollback", str(tip), check=True)
    run(ready, "other", f"echo o > {r}/etc/other")
    ready.ashctl("rollback", str(d1), check=True)
    branches = ready.ashctl("rebase", str(new_m1), "--onto", "1")
    assert branches.returncode == 2, (branches.stdout, branches.stderr, ready.json("list"))
    assert f"branches at layer {tip}" in branches.stderr
    assert f"{new_m1}..LAST" in branches.stderr
    inside = ready.ashctl("rebase", f"{new_m1}..{side}", "--onto", str(tip))
    assert inside.returncode == 2 and "on the line being replayed" in inside.stderr
    out = ready.ashctl(
        "rebase", f"{new_m1}..{side}", "--onto", str(ids(ready)["dirs"]), "--deploy", check=True
    ).stdout
    assert "3 layers replayed" in out and "takes effect now" in out, out
    assert (r / "etc/side").exists() and (r / "etc/mail2").exists()
    assert not (r / "etc/desk").exists()
    status = ready.json("status")
    assert status["labels"] == [] and status["drift"] is False  # type: ignore[index]
    assert ready.ashctl("doctor").returncode == 0
    assert os.path.isdir(r / ".ash/layers" / str(status["layer"]))  # type: ignore[index]


def test_a_label_moves_with_the_layer_a_remove_replays(ready: Image) -> None:
    r = ready.root
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run")
    a = run(ready, "a", f"echo 1 > {r}/etc/a")
    b = run(ready, "b", f"echo 2 > {r}/etc/b")
    c = run(ready, "c", f"echo 3 > {r}/etc/c")
    ready.ashctl("label", str(b), "mid", check=True)
    ready.ashctl("label", str(c), "top", check=True)
    out = ready.ashctl("remove", str(a), check=True)
    assert "moved the label mid" in out.stderr, out.stderr
    found = {x["id"]: x for x in ready.json("list")}  # type: ignore[union-attr]
    new_b, new_c = found[b]["replaced_by"], found[c]["replaced_by"]
    assert found[new_b]["labels"] == ["mid"] and found[new_c]["labels"] == ["top"]
    assert found[b]["labels"] == [] and ready.json("status")["labels"] == ["top"]  # type: ignore[index]
    assert ready.json("show", "mid")["name"] == "b"  # type: ignore[index]
    manifest = (r / f".ash/layers/{new_b}.json").read_text()
    assert '"labels":["mid"]' in manifest, manifest


def test_squash_makes_one_layer_of_a_run_and_a_replay_replays_its_parts(ready: Image) -> None:
    r = ready.root
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run")
    a = run(ready, "a", f"echo 1 > {r}/etc/a")
    b = run(ready, "b", f"echo 2 > {r}/etc/b")
    c = run(ready, "c", f"echo 3 > {r}/etc/c; rm {r}/etc/b")
    d = run(ready, "d", f"echo 4 > {r}/etc/d")
    ready.ashctl("label", str(c), "purpose", check=True)
    one = ready.ashctl("squash", str(b), str(b))
    assert one.returncode == 2 and "one layer already" in one.stderr
    backwards = ready.ashctl("squash", str(c), str(b))
    assert backwards.returncode == 2 and "nor after it" in backwards.stderr
    dry = ready.ashctl("squash", "b", "c", "--dry-run", check=True).stdout
    assert f"would squash layers {b}, {c}" in dry and f"record layers {d} again" in dry, dry
    out = ready.ashctl("squash", "b", "purpose", "--name", "bc", check=True).stdout
    assert f"squashed layers {b}..{c} into layer" in out, out
    found = {x["id"]: x for x in ready.json("list")}  # type: ignore[union-attr]
    squashed = next(x for x in found.values() if x["name"] == "bc")
    head = ready.json("status")
    new_d = found[head["layer"]]  # type: ignore[index]
    assert new_d["name"] == "d" and new_d["parent"] == squashed["id"]
    assert squashed["parent"] == a and squashed["labels"] == ["purpose"]
    assert [found[i]["replaced_by"] for i in (b, c, d)] == [squashed["id"]] * 2 + [new_d["id"]]
    assert head["drift"] is False  # type: ignore[index]
    assert ready.json("blame", "/etc/c")["layers"][0]["id"] == squashed["id"]  # type: ignore[index]
    assert ready.json("blame", "/etc/b")["layers"] == []  # made and removed inside the run
    snap = r / ".ash/layers" / str(squashed["id"])
    assert (snap / "etc/c").exists() and not (snap / "etc/b").exists()
    assert not (snap / "etc/d").exists()
    assert ready.ashctl("doctor").returncode == 0
    # Removing a layer below it replays its parts, one by one, and it is replaced as a whole.
    out = ready.ashctl("remove", str(a), check=True).stdout
    assert f'layer {b} "b": its file changes' in out and f'layer {c} "c"' in out, out
    assert (r / "etc/c").exists() and (r / "etc/d").exists() and not (r / "etc/a").exists()
    assert not (r / "etc/b").exists()
    found = {x["id"]: x for x in ready.json("list")}  # type: ignore[union-attr]
    assert found[squashed["id"]]["replaced_by"] is not None
    assert found[b]["replaced_by"] == found[c]["replaced_by"] == squashed["id"]  # kept
    assert found[found[squashed["id"]]["replaced_by"]]["labels"] == ["purpose"]
    assert ready.ashctl("doctor").returncode == 0


EVERY = "replay,deployments,mounts,stage"


def test_a_rebase_as_a_branch_killed_at_any_point_is_done_or_undone_whole(ready: Image) -> None:
    """SIGKILL at about 12 points of a rebase of a line that is not deployed: `doctor
    --repair` then leaves either no new layer or the whole new branch, and the root as it
    was, with no stage, mount or record of a stage left."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.btrfs.test_crash import assert_consistent

    r = ready.root
    run(ready, "dirs", f"mkdir -p {r}/proc {r}/sys {r}/dev {r}/tmp {r}/run")
    m1 = run(ready, "m1", f"echo mail > {r}/etc/mail")
    run(ready, "m2", f"echo more > {r}/etc/mail2")
    ready.ashctl("rollback", str(ids(ready)["dirs"]), check=True)
    d1 = run(ready, "d1", f"echo desk > {r}/etc/desk")

    def crashrun(limit: int, only: str = EVERY) -> subprocess.CompletedProcess[str]:
        crash = [sys.executable, "-m", "tests.btrfs.crashrun", str(limit), "--root", str(r)]
        return subprocess.run(
            [*crash, "rebase", str(m1), "--onto", str(d1)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "ASH_CRASH_ONLY": only},
        )

    def new_layers(before: set[int]) -> list[dict[str, Any]]:
        found = ready.json("list")
        assert isinstance(found, list)
        return [x for x in found if x["id"] not in before]

    def lines(only: str) -> int:
        counted = crashrun(0, only)
        assert counted.returncode == 0, counted.stderr
        return int(counted.stderr.rsplit("LINES ", 1)[1])

    # Evenly spread over replay, stage and mounts; then the last lines of replay's own code
    # (the stage gone, the journal cleared, labels moved), counted without the stage's
    # waits, whose number of lines depends on the machine's load.
    total, last = lines(EVERY), lines("replay")
    points = [(limit, EVERY) for limit in range(1, total + 1, max(1, total // 12))]
    points += [(limit, "replay") for limit in range(max(1, last - 8), last + 1)]
    done = undone = kills = 0
    for limit, only in points:
        before = {x["id"] for x in ready.json("list")}  # type: ignore[union-attr]
        result = crashrun(limit, only)
        kills += result.returncode == -signal.SIGKILL
        if result.returncode != -signal.SIGKILL:
            assert result.returncode == 0, (limit, result.stderr)
        doctor = ready.ashctl("doctor", "--repair")
        assert doctor.returncode == 0, (limit, doctor.stdout, doctor.stderr)
        assert_consistent(ready)
        made = new_layers(before)
        names = sorted(x["name"] for x in made if not x["name"].startswith("drift"))
        assert names in ([], ["m1", "m2"]), (limit, names)
        if names:
            tip = next(x for x in made if x["name"] == "m2")
            assert (r / ".ash/layers" / str(tip["id"]) / "etc/desk").exists(), limit
        done += bool(names)
        undone += not names
        status = ready.json("status")
        assert status["layer"] == d1 and status["drift"] is False, (limit, status)  # type: ignore[index]
        assert not (r / "etc/mail").exists()
        assert len(list((r / ".ash/deployments").iterdir())) <= 1, limit
        from tests.btrfs.conftest import left_on_host

        assert not left_on_host(r / ".ash"), limit
    assert kills >= 8 and done and undone, (kills, done, undone)


def test_a_squash_killed_at_any_point_leaves_the_line_as_it_was_or_squashed(
    ready: Image,
) -> None:
    """SIGKILL at about 20 points of `squash` (its records, snapshots, manifests): after
    `doctor --repair` the deployment's line is the old one or the squashed one, whole, and
    the root is as it was; what a kill left on disk is at most a branch beside the line."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.btrfs.test_crash import assert_consistent

    r = ready.root

    def crashrun(limit: int, a: int, b: int) -> subprocess.CompletedProcess[str]:
        crash = [sys.executable, "-m", "tests.btrfs.crashrun", str(limit), "--root", str(r)]
        return subprocess.run(
            [*crash, "squash", str(a), str(b), "--name", "squashed"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "ASH_CRASH_ONLY": "squash,store,ondisk,layers,labels"},
        )

    def line(i: int) -> tuple[int, int]:
        a = run(ready, f"a{i}", f"echo {i} > {r}/etc/a{i}")
        b = run(ready, f"b{i}", f"echo {i} > {r}/etc/b{i}")
        run(ready, f"c{i}", f"echo {i} > {r}/etc/c{i}")
        ready.ashctl("label", "--force", str(b), "purpose", check=True)
        return a, b

    counted = crashrun(0, *line(0))
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.rsplit("LINES ", 1)[1])
    kills = squashed = kept = 0
    limits = [*range(1, total + 1, max(1, total // 16)), *range(max(1, total - 4), total + 1)]
    for i, limit in enumerate(sorted(set(limits)), 1):
        a, b = line(i)
        result = crashrun(limit, a, b)
        kills += result.returncode == -signal.SIGKILL
        if result.returncode != -signal.SIGKILL:
            assert result.returncode == 0, (limit, result.stderr)
        doctor = ready.ashctl("doctor", "--repair")
        assert doctor.returncode == 0, (limit, doctor.stdout, doctor.stderr)
        assert_consistent(ready)
        found = {x["id"]: x for x in ready.json("list")}  # type: ignore[union-attr]
        head = found[ready.json("status")["layer"]]  # type: ignore[index]
        assert head["name"] == f"c{i}" and ready.json("status")["drift"] is False, limit  # type: ignore[index]
        below = found[head["parent"]]
        if below["name"] == "squashed":
            squashed += 1
            assert below["parent"] == found[a]["parent"] and found[a]["replaced_by"] == below["id"]
            assert below["labels"] == ["purpose"], limit
        else:
            kept += 1
            assert below["id"] == b and found[a]["replaced_by"] is None, limit
            assert below["labels"] == ["purpose"], limit
        for name in (f"a{i}", f"b{i}", f"c{i}"):
            assert (r / "etc" / name).exists(), limit
    assert kills >= 10 and squashed and kept, (kills, squashed, kept)
