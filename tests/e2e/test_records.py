"""Complete records: every layer knows the installed set of every manager in the root, so a
diff between any two layers is right per manager, whichever managers made the layers between."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.e2e.root import Root, chroot_argv, chroot_env
from tests.e2e.test_apt import layers

pytestmark = pytest.mark.e2e


def names(delta: dict[str, Any]) -> dict[str, list[str]]:
    return {kind: sorted(d["name"] for d in entries) for kind, entries in delta.items() if entries}


def by_name(root: Root, name: str) -> dict[str, Any]:
    return next(x for x in layers(root) if x["name"] == name)


def test_a_diff_across_managers_is_right_for_each(root: Root) -> None:
    root.run(["pacman", "-S", "--noconfirm", "ashtest-a"])
    root.run(["apt-get", "install", "-y", "ashtest-b"])
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    root.run(["dnf", "remove", "-y", "ashtest-v"])
    first = by_name(root, "pacman -S ashtest-a")["id"]
    last = by_name(root, "dnf remove ashtest-v")["id"]
    out = root.ashctl_json("diff", str(first), str(last))
    packages = {m: names(d) for m, d in out["packages"].items()}
    # apt added two; dnf added and removed ashtest-v: no change; pacman: nothing since.
    assert packages == {"apt": {"added": ["ashtest-a", "ashtest-b"]}}, out
    out = root.ashctl_json("diff", "1", str(first))
    assert {m: names(d) for m, d in out["packages"].items()} == {"pacman": {"added": ["ashtest-a"]}}


def test_a_skipped_run_shows_its_packages_in_the_drift_layer_that_keeps_it(root: Root) -> None:
    """ASH_SKIP=1 apt-get install: no layer then; the drift layer the next operation keeps
    says which packages it holds, and base, drift and run layers all diff."""
    root.run(["apt-get", "install", "-y", "ashtest-a"], env={"ASH_SKIP": "1"})
    root.run(["ashctl", "run", "--name", "my change", "--", "dpkg", "-r", "ashtest-a"])
    kept = [x for x in layers(root) if x["status"] == "drift"]
    assert len(kept) == 1 and names(kept[0]["packages"]) == {"added": ["ashtest-a"]}, kept
    run = by_name(root, "my change")
    assert names(run["packages"]) == {"removed": ["ashtest-a"]}, run
    out = root.ashctl_json("diff", "1", str(run["id"]))
    assert out["packages"] == {}  # added, then removed: the base's set again


def test_a_killed_ashctl_run_is_kept_interrupted_under_its_name(root: Root) -> None:
    proc = subprocess.Popen(
        chroot_argv(
            root.path,
            [
                "ashctl",
                "run",
                "--name",
                "my change",
                "--",
                "sh",
                "-c",
                "touch /etc/half-done; sleep 60",
            ],
        ),
        env=chroot_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (root.path / "etc/half-done").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "was not closed" in root.ashctl("doctor", check=False).stdout  # only said
    root.ashctl("doctor", "--repair", check=False)
    layer = by_name(root, "my change")
    assert layer["status"] == "interrupted"
    assert (root.path / ".ash/layers" / str(layer["id"]) / "etc/half-done").exists()


def test_a_manager_after_another_makes_no_drift_of_its_own(root: Root) -> None:
    """dnf4 writes its history database as it starts, before its pre hook; aptitude its
    states: after another manager's layer, those writes are the starting run's, not drift."""
    root.run(["apt-get", "install", "-y", "ashtest-a"])
    root.run(["dnf", "install", "-y", "ashtest-v"])
    root.run(["dnf5", "remove", "-y", "ashtest-v"])
    root.run(["pacman", "-S", "--noconfirm", "ashtest-v"])
    assert [x["status"] for x in layers(root)] == ["committed"] * 5, layers(root)


def test_a_store_elsewhere_is_the_one_the_post_hooks_use(rig_root_with_store: Root) -> None:
    """`store = "/.layers"` in ash.toml: setup mounts it there and fills the hook files in, so
    the post hooks find the helper (the layer sealed before apt returns)."""
    root = rig_root_with_store
    hook = (root.path / "etc/apt/apt.conf.d/80ashlayers").read_text()
    assert "ash-commit /.layers;" in hook and "@ASH_" not in hook
    launcher = (root.path / "usr/libexec/ashlayers/apt-hook").read_text()
    assert "@ASH_" not in launcher and "/dist-packages" in launcher
    root.run("apt-get install -y ashtest-a >/dev/null && echo x > /etc/after")
    layer = layers(root)[-1]
    assert layer["name"] == "apt-get install ashtest-a"
    assert (root.path / ".layers/layers" / str(layer["id"]) / "usr/share/ashtest/a").exists()
    assert not (root.path / ".layers/layers" / str(layer["id"]) / "etc/after").exists()
    assert (root.path / ".layers/run/commit.out").exists()  # the helper described it


def test_an_interrupted_run_closed_by_another_manager_has_its_delta(root: Root) -> None:
    """apt killed after dpkg installed the package but before its post hook: pacman's next
    begin closes the run as interrupted, with the package delta apt's database tells."""
    kill = root.path / "etc/apt/apt.conf.d/00-kill-apt"
    kill.write_text('DPkg::Post-Invoke { "read -r h o < /.ash/run/commit; kill -9 $o"; };\n')
    # The hook file, kept as drift before a run of ashctl's own.
    root.run(["ashctl", "run", "--name", "hook", "--", "touch", "/etc/hook-run"])
    root.run(["apt-get", "install", "-y", "ashtest-a"], check=False)
    kill.unlink()
    root.run(["pacman", "-S", "--noconfirm", "ashtest-v"])
    found = {x["name"]: x for x in layers(root)}
    interrupted = found["apt-get install ashtest-a"]
    assert interrupted["status"] == "interrupted"
    assert names(interrupted["packages"]) == {"added": ["ashtest-a"]}
    assert found["pacman -S ashtest-v"]["status"] == "committed"


def host_ashctl(root: Root, *args: str) -> subprocess.CompletedProcess[str]:
    """`ashctl --root R ...` run from the host (the test's own Python and bindings)."""
    return subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), *args],
        check=True,
        capture_output=True,
        text=True,
    )


def test_ashctl_on_the_host_reads_the_roots_databases_with_the_roots_bindings(root: Root) -> None:
    """The host's rpm (Debian 12) cannot open sid's rpmdb: `ashctl --root R run` from the
    host read it as "no rpm installed" and recorded a false `dnf: - ashtest-v` for good. The
    sets are read chrooted into the layer's snapshot, with the root's own python3 and rpm."""
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    root.run(["apt-get", "install", "-y", "ashtest-a"])
    host_ashctl(root, "run", "--name", "from the host", "--", "touch", f"{root.path}/etc/x")
    layer = by_name(root, "from the host")
    assert names(layer["packages"]) == {}, layer
    out = root.ashctl_json("diff", str(layer["parent"]), str(layer["id"]))
    assert out["packages"] == {}, out
    manifest = json.loads((root.path / f".ash/layers/{layer['id']}.json").read_text())
    assert "ashtest-v" in manifest["sets"]["dnf"], manifest["sets"]
    assert "ashtest-a" in manifest["sets"]["apt"], manifest["sets"]


def test_doctor_repair_corrects_a_set_an_older_version_read_with_the_hosts_bindings(
    root: Root,
) -> None:
    """What an older ashctl on the host recorded (issue 21): the rpmdb it could not open
    saved as no package at all, and a `run` layer's false `- ashtest-v`. Plain doctor says
    so; --repair reads the set again, chrooted with the root's own bindings, and the layer's
    delta and diff are true again. Records made now carry the mark and are left alone."""
    root.run(["dnf5", "install", "-y", "ashtest-v"])
    host_ashctl(root, "run", "--name", "from the host", "--", "touch", f"{root.path}/etc/x")
    layer = by_name(root, "from the host")
    assert root.ashctl("doctor", check=False).returncode == 0  # made now: marked
    path = root.path / f".ash/layers/{layer['id']}.json"
    manifest = json.loads(path.read_text())
    assert manifest.pop("sets_read_in_root") is True
    manifest["sets"]["dnf"] = {}  # the failed read, saved as empty
    false = {"added": [], "removed": [{"name": "ashtest-v", "version": "1.0-1"}]}
    false |= {"upgraded": [], "downgraded": []}
    manifest["packages"] = false
    path.write_text(json.dumps(manifest))
    with sqlite3.connect(root.path / ".ash/ash.db") as db:
        db.execute("UPDATE layers SET packages = ? WHERE id = ?", (json.dumps(false), layer["id"]))
    before = root.ashctl_json("diff", str(layer["parent"]), str(layer["id"]))["packages"]
    assert "ashtest-v" in names(before["dnf"])["removed"], before  # the false removal
    said = root.ashctl("doctor", check=False)
    assert said.returncode != 0, said.stdout
    assert f"layer {layer['id']} records no dnf" in said.stdout + said.stderr, said
    mended = host_ashctl(root, "doctor", "--repair")
    assert "its dnf set read again" in mended.stderr + mended.stdout, mended
    assert root.ashctl("doctor", check=False).returncode == 0
    assert root.ashctl_json("diff", str(layer["parent"]), str(layer["id"]))["packages"] == {}
    assert names(by_name(root, "from the host")["packages"]) == {}
    assert "ashtest-v" in json.loads(path.read_text())["sets"]["dnf"]


def test_dnf4_install_then_upgrade_makes_no_drift_of_dnfs_history(root: Root) -> None:
    """dnf4 writes its history after its `transaction` hook and exits seconds later (here a
    plugin after ashlayers' takes 3 s), after its helper described the layer: those writes
    are its own, not `drift: var/lib/dnf/history.sqlite` before the next run."""
    plugins = root.path / "usr/lib/python3/dist-packages/dnf-plugins"
    (plugins / "zz_slow.py").write_text(SLOW_DNF4_PLUGIN)
    (root.path / "etc/dnf/plugins/zz_slow.conf").write_text("[main]\nenabled=1\n")
    root.run(["dnf-3", "install", "-y", "ashtest-v-1.0"])
    root.run(["dnf-3", "upgrade", "-y"])
    found = [(x["manager"], x["status"]) for x in layers(root)]
    first = found.index(("dnf4", "committed"))  # after the drift of the plugin's files
    assert found[first:] == [("dnf4", "committed"), ("dnf4", "committed")], layers(root)
    assert root.ashctl_json("status")["drift"] is False


SLOW_DNF4_PLUGIN = """
import time

import dnf


class Slow(dnf.Plugin):
    name = "zz_slow"

    def transaction(self):
        time.sleep(3)  # longer than the helper waits for dnf to exit (linger.SETTLE)
"""
