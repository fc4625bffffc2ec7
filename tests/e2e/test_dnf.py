"""dnf5 and dnf (dnf4) in the sid root: every plain transaction leaves one named layer.

Each test runs the real manager in a fresh root (`ashctl setup` done) and checks the layer
list against rpm's own database: the recorded delta equals the change `rpm -qa` shows.
Drift layers (writes the managers make outside a transaction) may appear between them; a
test looks at the layers its command made that are not drift.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.root import Root

pytestmark = pytest.mark.e2e

MANAGER = {"dnf5": "dnf5", "dnf": "dnf4"}
DISABLE = {"dnf5": "--disable-plugin=ashlayers", "dnf": "--disableplugin=ashlayers"}


@pytest.fixture(params=["dnf5", "dnf"])
def dnf(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rpm_set(root: Root, at: str = "/") -> dict[str, str]:
    out = root.run(["rpm", "--root", at, "-qa", "--qf", "%{NAME} %{EVR}\\n"]).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def rpm_qa(root: Root, at: str = "/") -> list[str]:
    return sorted(root.run(["rpm", "--root", at, "-qa"]).stdout.split())


def layers(root: Root, at: str | None = None) -> list[dict[str, Any]]:
    where = ["--root", at] if at else []
    listed: list[dict[str, Any]] = json.loads(root.run(["ashctl", *where, "list", "--json"]).stdout)
    return listed


def expected_delta(before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    """The delta as `ashctl list --json` records it, computed from two `rpm -qa` sets."""
    both = sorted(before.keys() & after.keys())
    changed = [(n, before[n], after[n]) for n in both if before[n] != after[n]]
    newer = {n for n, _, _ in changed if _rpm_newer(after[n], before[n])}
    added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
    return {
        "added": [{"name": n, "version": after[n]} for n in added],
        "removed": [{"name": n, "version": before[n]} for n in removed],
        "upgraded": [{"name": n, "old": o, "new": w} for n, o, w in changed if n in newer],
        "downgraded": [{"name": n, "old": o, "new": w} for n, o, w in changed if n not in newer],
    }


def _rpm_newer(a: str, b: str) -> bool:
    # The test packages' versions are plain N.N-1: a tuple of ints orders them as rpm does.
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.replace("-", ".").split("."))

    return key(a) > key(b)


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    before: dict[str, str]
    after: dict[str, str]
    new: list[dict[str, Any]]  # layers this run made, drift left out

    @property
    def layer(self) -> dict[str, Any]:
        assert len(self.new) == 1, f"expected one layer, got {self.new}\n{self._output()}"
        return self.new[0]

    def _output(self) -> str:
        return f"stdout:\n{self.proc.stdout}\nstderr:\n{self.proc.stderr}"


def run(
    root: Root,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    ok: bool = True,
    at: str | None = None,
) -> Run:
    known = {layer["id"] for layer in layers(root, at)}
    before = rpm_set(root, at or "/")
    proc = root.run(argv, env=env, check=False)
    if ok:
        assert proc.returncode == 0, f"$ {shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}"
    new = [x for x in layers(root, at) if x["id"] not in known and x["status"] != "drift"]
    return Run(proc, before, rpm_set(root, at or "/"), new)


def check_layer(r: Run, dnf: str, argv: list[str], status: str = "committed") -> dict[str, Any]:
    layer = r.layer
    assert layer["manager"] == MANAGER[dnf]
    assert layer["status"] == status
    # The name leaves out the options that do not change what the command does.
    words = [w for w in argv[1:] if w != "-y" and not w.startswith(("--installroot", "--rel"))]
    assert layer["name"] == shlex.join([os.path.basename(argv[0]), *words])
    assert shlex.split(layer["command"])[1:] == argv[1:]
    assert layer["packages"] == expected_delta(r.before, r.after)
    return layer


def test_install(root: Root, dnf: str) -> None:
    argv = [dnf, "install", "-y", "ashtest-a"]
    r = run(root, argv)
    layer = check_layer(r, dnf, argv)
    assert layer["packages"]["added"] == [{"name": "ashtest-a", "version": "1.0-1"}]
    # The layer is sealed before dnf goes on, and described by the transaction's helper once
    # dnf is done (dnf5: the begin's own process, ashcore/linger.py; dnf4: a process its
    # plugin starts, dnf4helper.py), which says so in the store's run/commit.out. The seal
    # names the layer in dnf's output, on stderr (dnf5: its post action; dnf4: its plugin's
    # transaction hook), as apt's and pacman's do.
    said = ""
    for _ in range(100):  # the helper describes once dnf has exited: it may still be at it
        said = (root.path / ".ash/run/commit.out").read_text(errors="replace")
        if "ashlayers: layer" in said:
            break
        time.sleep(0.1)
    assert "ashlayers: layer" in said
    named = [x for x in r.proc.stderr.splitlines() if x.startswith("ashlayers: layer")]
    assert named == [f'ashlayers: layer {layer["id"]} "{layer["name"]}"'], r.proc.stderr


def test_install_with_a_dependency(root: Root, dnf: str) -> None:
    argv = [dnf, "install", "-y", "ashtest-b"]
    layer = check_layer(run(root, argv), dnf, argv)
    assert [p["name"] for p in layer["packages"]["added"]] == ["ashtest-a", "ashtest-b"]


def test_remove(root: Root, dnf: str) -> None:
    run(root, [dnf, "install", "-y", "ashtest-b"])
    argv = [dnf, "remove", "-y", "ashtest-b"]
    layer = check_layer(run(root, argv), dnf, argv)
    assert {p["name"] for p in layer["packages"]["removed"]} >= {"ashtest-b"}
    assert layer["packages"]["added"] == []


def test_upgrade(root: Root, dnf: str) -> None:
    run(root, [dnf, "install", "-y", "ashtest-v-1.0-1"])
    argv = [dnf, "upgrade", "-y", "ashtest-v"]
    layer = check_layer(run(root, argv), dnf, argv)
    assert layer["packages"]["upgraded"] == [{"name": "ashtest-v", "old": "1.0-1", "new": "2.0-1"}]


def test_downgrade(root: Root, dnf: str) -> None:
    run(root, [dnf, "install", "-y", "ashtest-v"])
    argv = [dnf, "downgrade", "-y", "ashtest-v"]
    layer = check_layer(run(root, argv), dnf, argv)
    assert layer["packages"]["downgraded"] == [
        {"name": "ashtest-v", "old": "2.0-1", "new": "1.0-1"}
    ]


def test_failing_post_scriptlet_is_kept_as_failed(root: Root, dnf: str) -> None:
    argv = [dnf, "install", "-y", "ashtest-fail"]
    r = run(root, argv, ok=False)
    assert r.proc.returncode != 0  # the scriptlet's failure is the manager's, not ours
    layer = check_layer(r, dnf, argv, status="failed")
    assert layer["packages"]["added"] == [{"name": "ashtest-fail", "version": "1.0-1"}]
    assert json.loads(root.run(["ashctl", "status", "--json"]).stdout)["pending"] is None


def test_a_run_that_changes_nothing_makes_no_layer(root: Root, dnf: str) -> None:
    run(root, [dnf, "install", "-y", "ashtest-a"])
    known = layers(root)
    r = run(root, [dnf, "install", "-y", "ashtest-a"])
    assert r.new == [] and r.before == r.after
    assert layers(root) == known


def test_ash_name_names_the_layer(root: Root, dnf: str) -> None:
    r = run(root, [dnf, "install", "-y", "ashtest-a"], env={"ASH_NAME": "web server"})
    assert r.layer["name"] == "web server" and r.layer["manager"] == MANAGER[dnf]


def test_a_begin_that_fails_stops_the_manager_before_any_change(root: Root, dnf: str) -> None:
    known = layers(root)
    root.run("cp /etc/ash/ash.toml /tmp/ash.toml && echo 'on_error = [' >> /etc/ash/ash.toml")
    proc = root.run([dnf, "install", "-y", "ashtest-a"], check=False)
    root.run("cp /tmp/ash.toml /etc/ash/ash.toml")  # not TOML above: the core could not begin
    assert proc.returncode != 0
    assert "cannot make a layer" in proc.stderr + proc.stdout
    assert "ashtest-a" not in rpm_set(root)
    assert layers(root) == known


OPT_OUTS = ["ASH_SKIP", "hooks.d", "command line", "manager's switch"]


@pytest.mark.parametrize("how", OPT_OUTS)
def test_opt_out(root: Root, dnf: str, how: str) -> None:
    run(root, [dnf, "install", "-y", "ashtest-v"])  # its helper is named in the run file
    named = root.run(["cat", "/.ash/run/commit"]).stdout
    argv = [dnf, "install", "-y", "ashtest-a"]
    env = None
    if how == "ASH_SKIP":
        env = {"ASH_SKIP": "1"}
    elif how == "hooks.d":
        root.run("mkdir -p /etc/ash/hooks.d && echo 'enabled = false' > /etc/ash/hooks.d/dnf.toml")
    elif how == "command line":
        argv.insert(1, DISABLE[dnf])
    elif dnf == "dnf":  # dnf4's own per-plugin switch
        root.run(["sed", "-i", "s/^enabled=1/enabled=0/", "/etc/dnf/plugins/ashlayers.conf"])
    else:  # dnf5's own: the actions plugin that runs our hook
        conf = "/etc/dnf/libdnf5-plugins/actions.conf"
        root.run(["sed", "-i", "s/^enabled = 1/enabled = 0/", conf])
    r = run(root, argv, env=env)
    assert r.after.get("ashtest-a") == "1.0-1"
    assert r.new == []
    assert "ashlayers: layer" not in r.proc.stdout + r.proc.stderr
    # No helper for a run without a transaction: the last one stays named (another run's
    # could still be at work).
    assert root.run(["cat", "/.ash/run/commit"]).stdout == named


def test_installroot_from_outside(root: Root, dnf: str) -> None:
    sub = str(root.make_subroot("sub"))
    root.run(["ashctl", "--root", sub, "setup"])
    host_layers = layers(root)
    host_rpms = rpm_qa(root)
    argv = [dnf, f"--installroot={sub}", "--releasever=sid", "install", "-y", "ashtest-b"]
    r = run(root, argv, at=sub)
    layer = check_layer(r, dnf, argv)
    assert [p["name"] for p in layer["packages"]["added"]] == ["ashtest-a", "ashtest-b"]
    assert layers(root) == host_layers  # nothing in the store of the chroot's own /
    assert rpm_qa(root) == host_rpms


def test_installroot_nobody_set_up_is_left_alone(root: Root, dnf: str) -> None:
    sub = str(root.make_subroot("fresh"))  # e.g. an image being bootstrapped
    host_layers = layers(root)
    argv = [dnf, f"--installroot={sub}", "--releasever=sid", "install", "-y", "ashtest-a"]
    proc = root.run(argv, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ashtest-a" in rpm_set(root, sub)
    assert layers(root) == host_layers
    assert not (root.path / "fresh/.ash").exists() or not any((root.path / "fresh/.ash").iterdir())


def test_other_libdnf5_front_end(root: Root) -> None:
    script = (
        "import sys, libdnf5\n"
        "base = libdnf5.base.Base()\n"
        "base.load_config()\n"
        "base.setup()\n"
        "sack = base.get_repo_sack()\n"
        "sack.create_repos_from_system_configuration()\n"
        "sack.load_repos()\n"
        "goal = libdnf5.base.Goal(base)\n"
        "goal.add_rpm_install(sys.argv[1])\n"
        "t = goal.resolve()\n"
        "t.download()\n"
        "sys.exit(0 if t.run() == libdnf5.base.Transaction.TransactionRunResult_SUCCESS else 1)\n"
    )
    root.run(f"cat > /tmp/front.py <<'EOF'\n{script}EOF")
    r = run(root, ["python3", "/tmp/front.py", "ashtest-b"])
    layer = r.layer
    assert layer["manager"] == "dnf5" and layer["name"] == "python3 /tmp/front.py ashtest-b"
    assert layer["packages"] == expected_delta(r.before, r.after)


def test_dnf4_as_a_library_makes_a_layer_per_transaction(root: Root) -> None:
    """One process, two transactions (dnf's Base is not made for a second one: a new Base):
    the first one's helper (dnf4helper.py) makes its layer before the second begins, which
    is a layer of its own."""
    script = (
        "import sys, dnf\n"
        "for name in sys.argv[1:]:\n"
        "    with dnf.Base() as base:\n"
        "        base.conf.read()\n"
        "        base.conf.substitutions['releasever'] = 'sid'\n"
        "        base.read_all_repos()\n"
        "        base.init_plugins()\n"
        "        base.fill_sack()\n"
        "        base.install(name)\n"
        "        base.resolve()\n"
        "        base.download_packages(base.transaction.install_set)\n"
        "        base.do_transaction()\n"
    )
    root.run(f"cat > /tmp/lib.py <<'EOF'\n{script}EOF")
    r = run(root, ["python3", "/tmp/lib.py", "ashtest-a", "ashtest-v"])
    assert [(x["manager"], x["status"]) for x in r.new] == [("dnf4", "committed")] * 2
    first, second = r.new
    assert first["packages"]["added"] == [{"name": "ashtest-a", "version": "1.0-1"}]
    assert [p["name"] for p in second["packages"]["added"]] == ["ashtest-v"]
    assert second["parent"] == first["id"]


def rollback(root: Root, layer_id: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), "rollback", str(layer_id)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rollback_restores_rpm_qa(root: Root, dnf: str) -> None:
    first = run(root, [dnf, "install", "-y", "ashtest-v-1.0-1"]).layer
    kept = rpm_qa(root)
    run(root, [dnf, "install", "-y", "ashtest-b"])
    run(root, [dnf, "upgrade", "-y", "ashtest-v"])
    run(root, [dnf, "remove", "-y", "ashtest-a"])
    assert rpm_qa(root) != kept
    rollback(root, first["id"])
    assert rpm_qa(root) == kept
    assert (root.path / "usr/share/ashtest/v").read_text() == "1.0\n"
    # The next operation branches from the layer rolled back to.
    branch = run(root, [dnf, "install", "-y", "ashtest-a"]).layer
    chain = {x["id"]: x for x in layers(root)}
    parent = chain[branch["parent"]]
    while parent["status"] == "drift":
        parent = chain[parent["parent"]]
    assert parent["id"] == first["id"]


def test_leftover_hooks_do_nothing_once_ashlayers_is_gone(root: Root, dnf: str) -> None:
    root.run(
        ["python3", "-m", "pip", "uninstall", "-y", "-q", "--break-system-packages", "ashlayers"]
    )
    proc = root.run([dnf, "install", "-y", "ashtest-a"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ashtest-a" in rpm_set(root)
    assert "Traceback" not in proc.stderr


def test_a_killed_dnf5_is_kept_as_interrupted(root: Root) -> None:
    # An action that runs before ours at post_transaction kills dnf5: the rpm transaction is
    # done, the commit never comes. The next run closes the transaction as interrupted.
    kill = "/etc/dnf/libdnf5-plugins/actions.d/00-kill.actions"
    root.run(f"echo 'post_transaction::::/bin/kill -KILL ${{pid}}' > {kill}")
    before = rpm_set(root)
    killed = root.run(["dnf5", "install", "-y", "ashtest-a"], check=False)
    assert killed.returncode != 0
    root.run(["rm", kill])
    after = rpm_set(root)
    assert after.get("ashtest-a") == "1.0-1"
    r = run(root, ["dnf5", "install", "-y", "ashtest-v"])
    interrupted, committed = r.new  # closed by this run's begin, then this run's layer
    assert interrupted["status"] == "interrupted" and interrupted["manager"] == "dnf5"
    assert interrupted["packages"] == expected_delta(before, after)
    assert committed["status"] == "committed" and committed["parent"] == interrupted["id"]
    assert committed["packages"]["added"] == [{"name": "ashtest-v", "version": "2.0-1"}]
