"""Replay with the real managers: remove an inner layer, rebase onto another base, dissolve,
and a replay that fails changes nothing. `ashctl` runs from the host (`--root`), as it must
to replace a root that is not the running system."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.root import Root
from tests.e2e.test_apt import layers

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]


def host_ashctl(root: Root, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=900,
    )


def by_name(root: Root, name: str) -> dict[str, Any]:
    found = [x for x in layers(root) if x["name"] == name]
    assert len(found) == 1, (name, [x["name"] for x in layers(root)])
    return found[0]


def installed(root: Root) -> dict[str, set[str]]:
    dpkg = root.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\\n"]).stdout
    rpm = root.run(["rpm", "-qa", "--qf", "%{NAME}\\n"]).stdout
    pacman = root.run(["pacman", "-Qq"], check=False).stdout  # exit 1: none installed
    return {
        "dpkg": {
            x.split()[0] for x in dpkg.splitlines() if x.startswith("ashtest") and "installed" in x
        },
        "rpm": {x for x in rpm.split() if x.startswith("ashtest")},
        "pacman": {x for x in pacman.split() if x.startswith("ashtest")},
    }


def test_remove_the_apt_layer_replays_dnf5_pacman_the_hand_edit_and_dnf4(root: Root) -> None:
    start = installed(root)  # the rig's own (ashtest-binsh gives rpm a /bin/sh)
    root.run(["apt-get", "install", "-y", "ashtest-b"])
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    # pacman's ashtest-a ships the file apt's does: --overwrite, as a user would.
    root.run(["pacman", "-S", "--noconfirm", "--overwrite", "*", "ashtest-a"])
    (root.path / "etc/hand-edit").write_text("mine\n")
    root.run(["dnf-3", "install", "-y", "ashtest-a"])
    before = {x["id"] for x in layers(root)}
    apt = by_name(root, "apt-get install ashtest-b")
    dry = host_ashctl(root, "remove", str(apt["id"]), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay" in dry.stdout and "dnf5 install -y ashtest-v" in dry.stdout, dry.stdout
    out = host_ashctl(root, "remove", str(apt["id"]))
    assert out.returncode == 0, (out.stdout, out.stderr)
    new_head = root.ashctl_json("list")[-1]["id"]
    # dnf-3's late writes to its history after its last hook are kept as drift (as a
    # rollback keeps them); replay leaves a manager's own database to the managers.
    assert "4 layers replayed, 1 dissolved" in out.stdout, out.stdout
    assert "[1/5] replaying" in out.stdout and "[5/5] replaying" in out.stdout  # progress
    assert "not replayed: /var/lib/dnf/history.sqlite" in out.stdout, out.stdout
    status = root.ashctl_json("status")  # before the queries below (rpm -qa writes its WAL)
    assert status["layer"] == new_head and status["drift"] is False, status
    now = installed(root)
    assert {m: now[m] - start[m] for m in now} == {
        "dpkg": set(),  # the apt layer is gone: ashtest-a and -b with it
        "rpm": {"ashtest-v", "ashtest-a"},
        "pacman": {"ashtest-a"},
    }
    assert (root.path / "etc/hand-edit").read_text() == "mine\n"
    found = {x["id"]: x for x in layers(root)}
    new, current = [], root.ashctl_json("status")["layer"]
    while current != 1:  # the deployment's line, down to the base
        new.insert(0, found[current])
        current = found[current]["parent"]
    assert all(x["id"] not in before for x in new), new
    assert [x["name"] for x in new][:2] == [
        "dnf5 install ashtest-v",
        "pacman -S --overwrite '*' ashtest-a",
    ] or len(new) == 4, new
    assert all(x["status"] in ("committed", "drift") for x in new), new
    old = {x["id"]: x for x in layers(root) if x["id"] in before}
    assert all(x["replaced_by"] in {n["id"] for n in new} for x in old.values() if x["replaced_by"])
    # The replayed layers and the apt layer removed: the old line says it is replaced.
    assert sum(1 for x in old.values() if x["replaced_by"]) >= 4
    assert old[apt["id"]]["replaced_by"], old[apt["id"]]
    assert "replaced" in root.ashctl("list").stdout
    tree = root.ashctl("tree", "--all").stdout
    assert "<- deployment" in tree and "├─" in tree, tree  # two lines from the base now
    folded = root.ashctl("tree").stdout  # the replaced line folded
    assert "├─" not in folded and "layers of replaced lines folded" in folded, folded
    assert root.ashctl("doctor").returncode == 0


def test_rebase_onto_a_base_that_has_the_package_dissolves_that_layer(root: Root) -> None:
    root.run(["apt-get", "install", "-y", "ashtest-v"])
    root.run(["apt-get", "install", "-y", "ashtest-a"])
    line = layers(root)[-2:]
    first = line[0]["id"]
    back = host_ashctl(root, "rollback", "1")
    assert back.returncode == 0, back.stderr
    root.run(["apt-get", "install", "-y", "ashtest-a"])  # the newer base, on another branch
    newer = layers(root)[-1]["id"]
    back = host_ashctl(root, "rollback", str(line[1]["id"]))
    assert back.returncode == 0, back.stderr
    dry = host_ashctl(root, "rebase", str(first), "--onto", str(newer), "--dry-run")
    assert "would dissolve" in dry.stdout and "the base has ashtest-a 1.0 now" in dry.stdout, dry
    out = host_ashctl(root, "rebase", str(first), "--onto", str(newer))
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "1 layers replayed, 1 dissolved" in out.stdout, out.stdout
    assert 'dissolved: "apt-get install ashtest-a" (the base has ashtest-a 1.0 now)' in out.stdout
    assert installed(root)["dpkg"] == {"ashtest-a", "ashtest-v"}
    head = root.ashctl_json("status")["layer"]
    made = next(x for x in layers(root) if x["id"] == head)
    assert made["parent"] == newer and made["name"] == "apt-get install ashtest-v"


def test_a_replay_that_fails_changes_nothing_and_says_why(root: Root) -> None:
    root.run(["pacman", "-S", "--noconfirm", "ashtest-a"])
    root.run(["pacman", "-R", "--noconfirm", "ashtest-a"])
    root.run(["apt-get", "install", "-y", "ashtest-v"])

    def records() -> list[dict[str, Any]]:  # sizes are measured after, off the manager's time
        return [{k: v for k, v in x.items() if k != "size"} for x in layers(root)]

    before = records()
    deployments = sorted(p.name for p in (root.path / ".ash/deployments").glob("*"))
    pacman_s = by_name(root, "pacman -S ashtest-a")
    out = host_ashctl(root, "remove", str(pacman_s["id"]))
    assert out.returncode == 1, (out.stdout, out.stderr)
    # The step, its command, and pacman's own words.
    assert "pacman -R --noconfirm ashtest-a" in out.stderr, out.stderr
    assert "target not found" in out.stderr, out.stderr
    assert records() == before
    assert sorted(p.name for p in (root.path / ".ash/deployments").glob("*")) == deployments
    assert installed(root)["dpkg"] == {"ashtest-v"}
    assert root.ashctl_json("status")["layer"] == before[-1]["id"]
    assert root.ashctl("doctor").returncode == 0
    # This store's own host folder only: another root on the machine may be replaying.
    from tests.e2e.image import _btrfsutil

    own = Path("/run/ashlayers") / _btrfsutil().subvolume_info(str(root.path / ".ash")).uuid.hex()
    assert not (list(own.iterdir()) if own.exists() else []), own


def test_export_and_apply_reproduce_the_packages_and_the_hand_edit(root: Root) -> None:
    root.run(["apt-get", "install", "-y", "ashtest-b"])
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    root.run(["pacman", "-S", "--noconfirm", "--overwrite", "*", "ashtest-a"])
    (root.path / "etc/hand-edit").write_text("mine\n")
    root.run(["dnf-3", "install", "-y", "ashtest-a"])
    recipe = root.path / "root/recipe.toml"
    out = host_ashctl(root, "export", "-o", str(recipe))
    assert out.returncode == 0, out.stderr
    text = recipe.read_text()
    assert text.count("[[operation]]") >= 5 and 'command = ["dnf5", "install", "-y"' in text, text
    assert 'files = "recipe.' in text  # the hand edit, as a bundle beside it
    copy = root.make_subroot("copy")
    target = root.path / copy.relative_to("/")
    before = installed_in(root, copy)
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(target), "apply"]
    dry = subprocess.run(
        [*argv, "--dry-run", str(recipe)], capture_output=True, text=True, cwd=PROJECT, timeout=120
    )
    assert dry.returncode == 0, dry.stderr
    assert "run dnf5 install -y" in dry.stdout and "write /etc/hand-edit (file" in dry.stdout
    assert not (target / "proc/self").exists() and installed_in(root, copy) == before
    assert (
        "[2/"
        in subprocess.run(
            [*argv, "--dry-run", "--from", "2", str(recipe)], capture_output=True, text=True
        ).stdout.splitlines()[0]
    )
    # A fresh machine has no package lists yet: apply fetches them before a manager's first
    # step (it said "Unable to locate package" before).
    for lists in ("var/lib/apt/lists", "var/lib/pacman/sync"):
        for entry in (target / lists).iterdir():
            if entry.is_file():
                entry.unlink()
    applied = subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(target), "apply", str(recipe)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=900,
    )
    assert applied.returncode == 0, (applied.stdout, applied.stderr)
    assert "fetching apt's lists: apt-get update" in applied.stdout, applied.stdout
    after = installed_in(root, copy)
    assert {m: after[m] - before[m] for m in after} == {
        "dpkg": {"ashtest-a", "ashtest-b"},
        "rpm": {"ashtest-v", "ashtest-a"},
        "pacman": {"ashtest-a"},
    }
    assert (target / "etc/hand-edit").read_text() == "mine\n"
    assert not (target / "proc/self").exists()  # apply unmounted what it mounted


def installed_in(root: Root, sub: Path) -> dict[str, set[str]]:
    def query(argv: list[str]) -> str:
        return root.run(["chroot", str(sub), *argv], check=False).stdout

    dpkg = query(["dpkg-query", "-W", "-f", "${Package} ${Status}\\n"])
    return {
        "dpkg": {
            x.split()[0] for x in dpkg.splitlines() if x.startswith("ashtest") and "installed" in x
        },
        "rpm": {
            x
            for x in query(["rpm", "-qa", "--qf", "%{NAME}\\n"]).split()
            if x.startswith("ashtest")
        },
        "pacman": {x for x in query(["pacman", "-Qq"]).split() if x.startswith("ashtest")},
    }


def test_a_failed_dpkg_i_and_the_apt_get_f_install_that_completed_it_replay_as_one(
    root: Root,
) -> None:
    """`dpkg -i x.deb` whose dependency is missing (a failed layer, x unpacked), then
    `apt-get -f install`: the pair is one step (apt installs what the two changed, at those
    versions) in a replay and in a recipe; export refused the line before."""
    copy = root.make_subroot("copy")  # first: its folder is drift, kept before the next
    root.run(["apt-get", "install", "-y", "ashtest-v"])  # the layer the remove takes out
    done = root.run(["dpkg", "-i", "/srv/ashtest/files/ashtest-b_1.0_all.deb"], check=False)
    assert done.returncode != 0, done.stdout  # ashtest-a is missing
    root.run(["apt-get", "-f", "install", "-y"])
    line = layers(root)
    failed, completing = line[-2], line[-1]
    assert failed["status"] == "failed" and completing["status"] == "committed", line
    assert completing["parent"] == failed["id"]
    recipe = root.path / "root/pair.toml"
    out = host_ashctl(root, "export", "-o", str(recipe))
    assert out.returncode == 0, out.stderr
    text = recipe.read_text()
    assert 'command = ["apt-get", "-y", "install", "ashtest-a=1.0", "ashtest-b=1.0"]' in text
    before = installed_in(root, copy)
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(root.path / copy.relative_to("/"))]
    applied = subprocess.run(
        [*argv, "apply", str(recipe)], capture_output=True, text=True, cwd=PROJECT, timeout=900
    )
    assert applied.returncode == 0, (applied.stdout, applied.stderr)
    after = installed_in(root, copy)
    assert after["dpkg"] - before["dpkg"] == {"ashtest-a", "ashtest-b", "ashtest-v"}
    # Remove the layer under the pair: the pair is replayed as one command.
    first = by_name(root, "apt-get install ashtest-v")
    plan = host_ashctl(root, "remove", str(first["id"]), "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"layers {failed['id']} " in plan.stdout and "as one: apt-get -y install" in plan.stdout
    gone = host_ashctl(root, "remove", str(first["id"]))
    assert gone.returncode == 0, (gone.stdout, gone.stderr)
    assert installed(root)["dpkg"] >= {"ashtest-a", "ashtest-b"}
    assert "ashtest-v" not in installed(root)["dpkg"]
    states = root.run(["dpkg-query", "-W", "-f", "${Status}\\n", "ashtest-b"]).stdout
    assert states.strip() == "install ok installed"
    tip = layers(root)[-1]
    assert tip["status"] == "committed" and tip["parent"] == first["parent"], tip
    assert sorted(d["name"] for d in tip["packages"]["added"]) == ["ashtest-a", "ashtest-b"]
    old = {x["id"]: x for x in layers(root)}
    assert old[failed["id"]]["replaced_by"] == tip["id"], old[failed["id"]]
    assert old[completing["id"]]["replaced_by"] == tip["id"], old[completing["id"]]


def test_a_failed_layer_rebased_with_the_layer_that_completed_it(root: Root) -> None:
    """`rebase FAILED --onto BASE` takes the pair as one step; a failed layer that nothing
    completed yet is still refused, saying what would make it replayable."""
    root.run(["apt-get", "install", "-y", "ashtest-v"])
    root.run(["dpkg", "-i", "/srv/ashtest/files/ashtest-b_1.0_all.deb"], check=False)
    failed = layers(root)[-1]
    refused = host_ashctl(root, "export", "-o", str(root.path / "root/no.toml"))
    assert refused.returncode != 0 and "only with the next layer" in refused.stderr, refused
    root.run(["apt-get", "-f", "install", "-y"])
    done = host_ashctl(root, "rebase", str(failed["id"]), "--onto", "1")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "as one: apt-get -y install ashtest-a=1.0 ashtest-b=1.0" in done.stdout, done.stdout
    assert installed(root)["dpkg"] >= {"ashtest-a", "ashtest-b"}
    assert "ashtest-v" not in installed(root)["dpkg"]
    assert root.ashctl_json("status")["layer"] == layers(root)[-1]["id"]
