"""zypper in the sid root: every plain transaction leaves one named layer (the commit plugin).

zypper shares the rpmdb with dnf: the recorded delta equals the change `rpm -qa` shows, under
the manager `zypper`. The plugin lives in plugins/zypper/ alone (and one registration line).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.root import Root
from tests.e2e.test_dnf import Run, expected_delta, layers, rpm_set

pytestmark = pytest.mark.e2e

ZYPPER = ["zypper", "--non-interactive"]


def run(root: Root, words: list[str], *, env: dict[str, str] | None = None) -> Run:
    known = {layer["id"] for layer in layers(root)}
    before = rpm_set(root)
    proc = root.run([*ZYPPER, *words], env=env, check=False)
    assert proc.returncode == 0, f"$ zypper {' '.join(words)}\n{proc.stdout}\n{proc.stderr}"
    new = [x for x in layers(root) if x["id"] not in known and x["status"] != "drift"]
    return Run(proc, before, rpm_set(root), new)


def check(r: Run, name: str) -> dict[str, Any]:
    layer = r.layer
    assert layer["manager"] == "zypper" and layer["status"] == "committed", layer
    assert layer["name"] == name
    assert layer["packages"] == expected_delta(r.before, r.after)
    return layer


def test_setup_installs_the_commit_plugin(root: Root) -> None:
    plugin = root.path / "usr/lib/zypp/plugins/commit/ashlayers"
    assert plugin.is_file() and plugin.stat().st_mode & 0o111
    assert (root.path / "etc/ash/hooks.d/zypper.toml").is_file()


def test_install_remove_and_update_make_one_layer_each(root: Root) -> None:
    first = check(run(root, ["install", "ashtest-b"]), "zypper install ashtest-b")
    assert [p["name"] for p in first["packages"]["added"]] == ["ashtest-a", "ashtest-b"]
    removed = check(run(root, ["remove", "ashtest-b"]), "zypper remove ashtest-b")
    assert [p["name"] for p in removed["packages"]["removed"]] == ["ashtest-b"]
    root.run([*ZYPPER, "install", "--oldpackage", "ashtest-v-1.0"], check=True)
    updated = check(run(root, ["update"]), "zypper update")
    assert updated["packages"]["upgraded"] == [
        {"name": "ashtest-v", "old": "1.0-1", "new": "2.0-1"}
    ]
    # One set of the rpmdb per layer, under dnf's name: zypper writes that database too.
    manifest = json.loads(root.run(["cat", f"/.ash/layers/{updated['id']}.json"]).stdout)
    assert "zypper" not in manifest.get("sets", {}) and "dnf" in manifest.get("sets", {})


def test_opt_out_per_run_and_per_manager(root: Root) -> None:
    skipped = run(root, ["install", "ashtest-a"], env={"ASH_SKIP": "1"})
    assert skipped.new == [] and "ashtest-a" in skipped.after
    (root.path / "etc/ash/hooks.d/zypper.toml").write_text("enabled = false\n")
    off = run(root, ["install", "ashtest-v"])
    assert off.new == [] and "ashtest-v" in off.after


def test_a_zypper_layer_is_rolled_back_and_replayed(root: Root) -> None:
    layer = check(run(root, ["install", "ashtest-a"]), "zypper install ashtest-a")
    check(run(root, ["install", "ashtest-v"]), "zypper install ashtest-v")
    # Remove the first from the middle: the second is replayed with zypper, non-interactive.
    done = subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), "remove", str(layer["id"])],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "zypper --non-interactive install ashtest-v" in done.stdout, done.stdout
    now = rpm_set(root)
    assert "ashtest-v" in now and "ashtest-a" not in now
