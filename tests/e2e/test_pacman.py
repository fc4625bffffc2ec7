"""The pacman plugin with the real pacman in the sid root: every plain transaction is a layer.

Each test runs plain `pacman ... --noconfirm` in a fresh root (`ashctl setup` done, base layer
1) and checks the new layer against pacman's own `pacman -Q` before and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.root import Root

pytestmark = pytest.mark.e2e

FILES = "/srv/ashtest/files"
V1_FILE = f"{FILES}/ashtest-v-1.0-1-any.pkg.tar.zst"
KILL_HOOK = "/etc/pacman.d/hooks/50-ashtest-kill.hook"


# -- helpers ---------------------------------------------------------------------------------
def layers(root: Root) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(root.ashctl("list", "--json").stdout)
    return listed


def query(root: Root) -> dict[str, str]:
    """pacman's own view: `pacman -Q` as {name: version}."""
    out = root.run(["pacman", "-Q"], check=False).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def vercmp(root: Root, a: str, b: str) -> int:
    return int(root.run(["vercmp", a, b]).stdout.strip())


def expected_delta(root: Root, before: Mapping[str, str], after: Mapping[str, str]) -> Any:
    """The delta in `ashctl list --json` form, computed from two `pacman -Q`."""
    changed = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
    return {
        "added": [{"name": n, "version": after[n]} for n in sorted(after.keys() - before.keys())],
        "removed": [
            {"name": n, "version": before[n]} for n in sorted(before.keys() - after.keys())
        ],
        "upgraded": [
            {"name": n, "old": before[n], "new": after[n]}
            for n in changed
            if vercmp(root, before[n], after[n]) < 0
        ],
        "downgraded": [
            {"name": n, "old": before[n], "new": after[n]}
            for n in changed
            if vercmp(root, before[n], after[n]) > 0
        ],
    }


class Run:
    """One pacman command, with pacman -Q and the layer list before and after it."""

    def __init__(self, root: Root, args: list[str], env: dict[str, str] | None = None) -> None:
        self.before = query(root)
        known = {layer["id"] for layer in layers(root)}
        self.proc = root.run(["pacman", *args, "--noconfirm"], env=env, check=False)
        self.after = query(root)
        self.all = layers(root)
        self.new = [layer for layer in self.all if layer["id"] not in known]
        self.pacman = [layer for layer in self.new if layer["manager"] == "pacman"]

    @property
    def layer(self) -> dict[str, Any]:
        assert len(self.pacman) == 1, (self.pacman, self.proc.stdout, self.proc.stderr)
        return self.pacman[0]


def pacman(root: Root, *args: str, env: dict[str, str] | None = None) -> Run:
    run = Run(root, list(args), env)
    assert run.proc.returncode == 0, run.proc.stdout + run.proc.stderr
    return run


def assert_layer(root: Root, run: Run, name: str, status: str = "committed") -> dict[str, Any]:
    layer = run.layer
    assert layer["name"] == name
    assert layer["status"] == status
    assert layer["manager"] == "pacman"
    assert layer["command"].startswith("pacman ")
    assert layer["packages"] == expected_delta(root, run.before, run.after)
    snapshot = root.path / ".ash/layers" / str(layer["id"])
    assert snapshot.is_dir()
    assert not (snapshot / "var/lib/pacman/db.lck").exists()  # pacman held it during the hooks
    assert_database_face_agrees(root)
    return layer


AGREE = (
    "import json; from ashplugins.pacman.database import PacmanDatabase, read_installed_pyalpm;"
    "print(json.dumps([PacmanDatabase().read_installed('/'), read_installed_pyalpm('/')]))"
)


def assert_database_face_agrees(root: Root) -> None:
    """The plugin's fast read of the local database == pyalpm's Handle == pacman -Q."""
    fast, binding = json.loads(root.run(["python3", "-I", "-c", AGREE]).stdout)
    assert fast == binding == query(root)


def head(root: Root) -> int:
    return max(layer["id"] for layer in layers(root))


# -- operations ------------------------------------------------------------------------------
def test_install_is_one_named_layer(root: Root) -> None:
    parent = head(root)
    run = pacman(root, "-S", "ashtest-a")
    layer = assert_layer(root, run, "pacman -S ashtest-a")
    assert run.new == [layer]  # no drift before it, nothing else
    assert layer["parent"] == parent
    assert layer["command"] == "pacman -S ashtest-a --noconfirm"
    assert layer["packages"]["added"] == [{"name": "ashtest-a", "version": "1.0-1"}]
    snapshot = root.path / ".ash/layers" / str(layer["id"])
    assert (snapshot / "usr/share/ashtest/a").read_text() == "1.0\n"
    assert not (root.path / "var/lib/pacman/db.lck").exists()


def test_install_with_a_dependency(root: Root) -> None:
    run = pacman(root, "-S", "ashtest-b")
    layer = assert_layer(root, run, "pacman -S ashtest-b")
    assert [p["name"] for p in layer["packages"]["added"]] == ["ashtest-a", "ashtest-b"]


def test_remove(root: Root) -> None:
    pacman(root, "-S", "ashtest-a")
    run = pacman(root, "-R", "ashtest-a")
    layer = assert_layer(root, run, "pacman -R ashtest-a")
    assert layer["packages"]["removed"] == [{"name": "ashtest-a", "version": "1.0-1"}]
    assert run.new == [layer]


def test_remove_with_dependencies(root: Root) -> None:
    pacman(root, "-S", "ashtest-b")
    run = pacman(root, "-Rns", "ashtest-b")
    layer = assert_layer(root, run, "pacman -Rns ashtest-b")
    assert [p["name"] for p in layer["packages"]["removed"]] == ["ashtest-a", "ashtest-b"]
    assert run.after == {}


def test_install_a_local_file(root: Root) -> None:
    run = pacman(root, "-U", V1_FILE)
    layer = assert_layer(root, run, f"pacman -U {V1_FILE}")
    assert layer["packages"]["added"] == [{"name": "ashtest-v", "version": "1.0-1"}]


def test_sync_alone_is_no_layer_and_not_drift(root: Root) -> None:
    run = pacman(root, "-Syy")  # a forced refresh rewrites the sync databases
    assert run.new == []
    assert "ashtest" in run.proc.stdout
    nothing = pacman(root, "-Syu")  # nothing to upgrade: no transaction, no hooks
    assert nothing.new == []
    after = pacman(root, "-S", "ashtest-a")
    assert after.new == [after.layer]  # the refreshed sync dbs were not taken as drift


def test_full_upgrade_is_one_layer(root: Root) -> None:
    pacman(root, "-U", V1_FILE)
    pacman(root, "-S", "ashtest-a")
    run = pacman(root, "-Syu")
    layer = assert_layer(root, run, "pacman -Syu")
    assert run.new == [layer]
    assert layer["packages"]["upgraded"] == [{"name": "ashtest-v", "old": "1.0-1", "new": "2.0-1"}]


def test_downgrade_with_a_local_file(root: Root) -> None:
    pacman(root, "-S", "ashtest-v")
    run = pacman(root, "-U", V1_FILE)
    layer = assert_layer(root, run, f"pacman -U {V1_FILE}")
    assert layer["packages"]["downgraded"] == [
        {"name": "ashtest-v", "old": "2.0-1", "new": "1.0-1"}
    ]


def test_a_run_that_changes_no_package_makes_no_layer(root: Root) -> None:
    pacman(root, "-S", "ashtest-a")
    again = pacman(root, "-S", "ashtest-a")  # a reinstall: a transaction, the same package set
    assert "reinstalling" in again.proc.stdout
    assert again.new == []
    # The pre hook's helper made the decision once pacman exited (ashcore/linger.py): what it
    # said is in the store's run/commit.out (ashctl list above waits for it, for a while: on a
    # loaded machine the helper may still be writing).
    said = ""
    for _ in range(100):
        said = (root.path / ".ash/run/commit.out").read_text()
        if "no layer" in said:
            break
        time.sleep(0.1)
    assert "no layer" in said, said


def test_what_a_reinstall_rewrote_is_not_drift(root: Root) -> None:
    pacman(root, "-S", "ashtest-a")
    pacman(root, "-S", "ashtest-a")
    then = pacman(root, "-S", "ashtest-v")
    assert then.new == [then.layer]


def test_ash_name_names_the_layer(root: Root) -> None:
    run = pacman(root, "-S", "ashtest-a", env={"ASH_NAME": "my editor"})
    assert_layer(root, run, "my editor")


# -- failure ---------------------------------------------------------------------------------
def test_a_failing_install_script(root: Root) -> None:
    run = pacman(root, "-S", "ashtest-fail")  # pacman exits 0 all the same
    assert "command failed to execute correctly" in run.proc.stderr
    # alpm tells a hook nothing of it (not even pacman.log has the exit status, see hook.py):
    # the layer is the state pacman left, package in, as pacman -Q says.
    layer = assert_layer(root, run, "pacman -S ashtest-fail")
    assert layer["packages"]["added"] == [{"name": "ashtest-fail", "version": "1.0-1"}]
    log = root.run(["cat", "/var/log/pacman.log"]).stdout
    assert "[ALPM-SCRIPTLET] ashtest-fail: post_install fails" in log


def test_a_killed_transaction_is_closed_as_interrupted(root: Root) -> None:
    # A post-transaction hook that runs before ours (50- < zz-) kills pacman: the packages
    # are in, our post hook never runs.
    hook = (
        "[Trigger]\nOperation = Install\nType = Package\nTarget = ashtest-a\n\n"
        "[Action]\nWhen = PostTransaction\nExec = /bin/sh -c 'kill -9 $PPID'\n"
    )
    root.run(["sh", "-c", f"cat > {KILL_HOOK}"], input=hook)
    killed = Run(root, ["-S", "ashtest-a"])
    assert killed.proc.returncode == -9 or killed.proc.returncode == 137, killed.proc
    assert killed.pacman == []  # still pending
    status = json.loads(root.ashctl("status", "--json").stdout)
    assert status["pending"] is not None
    root.run(["rm", "-f", KILL_HOOK, "/var/lib/pacman/db.lck"])  # what the user does next
    run = pacman(root, "-S", "ashtest-v")
    interrupted, committed = run.pacman
    assert interrupted["status"] == "interrupted"
    assert interrupted["name"] == "pacman -S ashtest-a"
    assert interrupted["packages"] == expected_delta(root, killed.before, killed.after)
    assert committed["status"] == "committed" and committed["name"] == "pacman -S ashtest-v"
    assert committed["parent"] == interrupted["id"]
    assert committed["packages"]["added"] == [{"name": "ashtest-v", "version": "2.0-1"}]


# -- opt-out ---------------------------------------------------------------------------------
def test_ash_skip(root: Root) -> None:
    run = pacman(root, "-S", "ashtest-a", env={"ASH_SKIP": "1"})
    assert run.new == []
    assert run.after == {"ashtest-a": "1.0-1"}
    assert "ASH_SKIP" in run.proc.stdout


@pytest.mark.parametrize(
    "toml",
    ["enabled = false\n", 'skip_packages = ["ashtest-*"]\n', 'skip_commands = ["-U"]\n'],
)
def test_hooks_toml_opts_out(root: Root, toml: str) -> None:
    root.run(["sh", "-c", "cat > /etc/ash/hooks.d/pacman.toml"], input=toml)
    before = layers(root)
    run = pacman(root, "-U", V1_FILE)
    assert run.pacman == []
    assert run.after == {"ashtest-v": "1.0-1"}
    assert [layer for layer in run.all if layer["manager"] == "pacman"] == [
        layer for layer in before if layer["manager"] == "pacman"
    ]


# -- rollback --------------------------------------------------------------------------------
def test_rollback_leaves_pacman_q_exactly_as_before(root: Root) -> None:
    target = pacman(root, "-S", "ashtest-a").layer
    expected = query(root)
    pacman(root, "-S", "ashtest-b")
    pacman(root, "-U", V1_FILE)
    pacman(root, "-S", "ashtest-fail")
    assert query(root) != expected
    rolled = subprocess.run(
        [
            sys.executable,
            "-m",
            "ashcore.cli",
            "--root",
            str(root.path),
            "rollback",
            str(target["id"]),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert query(root) == expected
    assert root.run(["pacman", "-Qk", "ashtest-a"]).returncode == 0
    assert not (root.path / "usr/share/ashtest/b").exists()
    # The next operation branches from the rolled-back layer.
    run = pacman(root, "-S", "ashtest-v")
    assert run.new == [run.layer]
    assert run.layer["parent"] == target["id"]


# -- setup -----------------------------------------------------------------------------------
def test_setup_installs_the_hooks_once(root: Root) -> None:
    hooks = root.path / "etc/pacman.d/hooks"
    assert sorted(p.name for p in hooks.iterdir()) == [
        "00-ashlayers-pre.hook",
        "zz-ashlayers-post.hook",
    ]
    assert (root.path / "usr/libexec/ashlayers/pacman-hook").stat().st_mode & 0o111
    again = root.ashctl("setup").stdout
    assert "pacman" not in again  # idempotent: nothing rewritten


def test_another_root_nobody_set_up_is_left_alone(root: Root) -> None:
    # `pacman --root` runs this root's hooks chrooted into the other root: no store there.
    sub = root.make_subroot("sub")
    known = layers(root)
    done = root.run(["pacman", "--root", str(sub), "-U", "--noconfirm", V1_FILE])
    assert "ashlayers: opening a layer" in done.stdout  # the hooks ran, and let pacman go on
    assert root.run(["pacman", "--root", str(sub), "-Q"]).stdout == "ashtest-v 1.0-1\n"
    assert layers(root) == known


def test_a_set_up_root_without_the_launcher_stops_pacman(root: Root) -> None:
    root.run(["rm", "/usr/libexec/ashlayers/pacman-hook"])
    run = Run(root, ["-S", "ashtest-a"])
    assert run.proc.returncode == 1
    assert "pacman-hook is missing (run ashctl setup)" in run.proc.stdout
    assert run.after == {}  # stopped before any change


def test_leftover_hooks_never_stop_pacman_once_ashlayers_is_gone(root: Root) -> None:
    root.run(
        ["python3", "-m", "pip", "uninstall", "-q", "-y", "--break-system-packages", "ashlayers"]
    )
    done = root.run(["pacman", "-S", "--noconfirm", "ashtest-a"])
    assert "ashlayers: opening a layer" in done.stdout
    assert query(root) == {"ashtest-a": "1.0-1"}
