"""The apt plugin with real apt and dpkg in the sid root: each run leaves the right layer.

Every test compares the layer's recorded delta with what dpkg itself reports
(`dpkg-query -W` before and after), states of unfinished packages included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.e2e.root import Root

pytestmark = pytest.mark.e2e

FILES = "/srv/ashtest/files"
QUERY = ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\\n"]
# dpkg's one-letter states (the second letter of db:Status-Abbrev) of unfinished packages
UNFINISHED = {"H": "half-installed", "U": "unpacked", "F": "half-configured"}

Packages = dict[str, str]


def dpkg_packages(root: Root) -> Packages:
    """name -> version by dpkg-query, "1.0 (half-configured)" for an unfinished package."""
    found: Packages = {}
    for line in root.run(QUERY).stdout.splitlines():
        name, version, abbrev = line.split(" ", 2)
        state = abbrev[1]
        if state in "nc":  # not-installed, config-files
            continue
        found[name] = f"{version} ({UNFINISHED[state]})" if state in UNFINISHED else version
    return found


def layers(root: Root) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(root.ashctl("list", "--json").stdout)
    return result


def dpkg_delta(before: Packages, after: Packages) -> dict[str, Any]:
    return {
        "added": sorted((n, v) for n, v in after.items() if n not in before),
        "removed": sorted((n, v) for n, v in before.items() if n not in after),
        "changed": sorted(
            (n, before[n], after[n]) for n in before.keys() & after.keys() if before[n] != after[n]
        ),
    }


def recorded(layer: dict[str, Any]) -> dict[str, Any]:
    p = layer["packages"]
    return {
        "added": sorted((d["name"], d["version"]) for d in p["added"]),
        "removed": sorted((d["name"], d["version"]) for d in p["removed"]),
        "changed": sorted((d["name"], d["old"], d["new"]) for d in p["upgraded"] + p["downgraded"]),
    }


def operation(
    root: Root,
    command: list[str] | str,
    *,
    env: dict[str, str] | None = None,
    ok: bool = True,
    drift: bool | None = False,
) -> tuple[dict[str, Any] | None, subprocess.CompletedProcess[str]]:
    """Run one package operation; return the layer it left (None: none) and its process.

    Asserts that at most one layer appeared (after a drift layer if `drift`: changes made
    since the last layer, e.g. by a run with ASH_SKIP=1; None: there may be one) and that
    its delta is dpkg's own.
    """
    known = {layer["id"] for layer in layers(root)}
    before = dpkg_packages(root)
    done = root.run(command, env=env, check=False)
    assert (done.returncode == 0) == ok, f"{command}: rc {done.returncode}\n{done.stderr}"
    new = [layer for layer in layers(root) if layer["id"] not in known]
    if drift or (drift is None and new and new[0]["status"] == "drift"):
        assert new and new[0]["status"] == "drift", f"{command}: no drift layer first: {new}"
        kept = new.pop(0)
        assert not new or new[0]["parent"] == kept["id"]
    assert len(new) <= 1, f"{command} left {len(new)} layers: {new}"
    if not new:
        return None, done
    layer = new[0]
    assert recorded(layer) == dpkg_delta(before, dpkg_packages(root)), layer
    return layer, done


def install_first(root: Root, *packages: str) -> None:
    layer, _ = operation(root, ["apt-get", "install", "-y", *packages])
    assert layer is not None


def test_install_is_one_named_layer(root: Root) -> None:
    layer, _ = operation(root, ["apt-get", "install", "-y", "ashtest-a"])
    assert layer is not None
    assert layer["name"] == "apt-get install ashtest-a"
    assert layer["command"] == "apt-get install -y ashtest-a"
    assert (layer["manager"], layer["status"]) == ("apt", "committed")
    assert layer["packages"]["added"] == [{"name": "ashtest-a", "version": "1.0"}]


def test_plain_apt_install_with_a_dependency(root: Root) -> None:
    layer, _ = operation(root, ["apt", "install", "-y", "ashtest-b"])
    assert layer is not None
    assert layer["name"] == "apt install ashtest-b"
    assert [d["name"] for d in layer["packages"]["added"]] == ["ashtest-a", "ashtest-b"]
    assert layer["parent"] == 1


def test_remove_and_purge(root: Root) -> None:
    install_first(root, "ashtest-b")
    layer, _ = operation(root, ["apt-get", "remove", "-y", "ashtest-b"])
    assert layer is not None and layer["name"] == "apt-get remove ashtest-b"
    assert layer["packages"]["removed"] == [{"name": "ashtest-b", "version": "1.0"}]
    layer, _ = operation(root, ["apt-get", "remove", "--purge", "-y", "ashtest-a"])
    assert layer is not None and layer["name"] == "apt-get remove --purge ashtest-a"
    assert layer["packages"]["removed"] == [{"name": "ashtest-a", "version": "1.0"}]
    assert "ashtest-a" not in dpkg_packages(root)


def test_upgrade_and_downgrade(root: Root) -> None:
    install_first(root, "ashtest-v=1.0")
    layer, _ = operation(root, ["apt-get", "upgrade", "-y"])
    assert layer is not None and layer["name"] == "apt-get upgrade"
    assert layer["packages"]["upgraded"] == [{"name": "ashtest-v", "old": "1.0", "new": "2.0"}]
    layer, _ = operation(root, ["apt-get", "install", "-y", "--allow-downgrades", "ashtest-v=1.0"])
    assert layer is not None and layer["name"] == "apt-get install ashtest-v=1.0"
    assert layer["packages"]["downgraded"] == [{"name": "ashtest-v", "old": "2.0", "new": "1.0"}]


def test_dpkg_alone(root: Root) -> None:
    deb = f"{FILES}/ashtest-a_1.0_all.deb"
    layer, _ = operation(root, ["dpkg", "-i", deb])
    assert layer is not None
    assert (layer["name"], layer["manager"], layer["status"]) == (
        f"dpkg -i {deb}",
        "dpkg",
        "committed",
    )
    layer, _ = operation(root, ["dpkg", "-r", "ashtest-a"])
    assert layer is not None and layer["packages"]["removed"][0]["name"] == "ashtest-a"
    # Measured soon after, though no helper stayed behind dpkg alone (it was "?" until a
    # later apt run measured it).
    size = None
    for _ in range(100):
        size = next(x for x in layers(root) if x["id"] == layer["id"])["size"]
        if size is not None:
            break
        time.sleep(0.1)
    assert size is not None and size >= 0


def test_failed_postinst_then_fix_broken_install(root: Root) -> None:
    layer, done = operation(root, ["apt-get", "install", "-y", "ashtest-fail"], ok=False)
    assert done.returncode == 100
    assert layer is not None and layer["status"] == "failed"
    assert layer["packages"]["added"] == [
        {"name": "ashtest-fail", "version": "1.0 (half-configured)"}
    ]
    # The admin mends the script by hand, then apt finishes the job. (The core may keep the
    # edit as drift, or fold it into the failed layer: it is in dpkg's own database.)
    root.run("printf '#!/bin/sh\\nexit 0\\n' > /var/lib/dpkg/info/ashtest-fail.postinst")
    fixed, _ = operation(root, ["apt-get", "-f", "install", "-y"], drift=None)
    assert fixed is not None
    assert (fixed["name"], fixed["status"]) == ("apt-get -f install", "committed")
    assert fixed["packages"]["upgraded"] == [
        {"name": "ashtest-fail", "old": "1.0 (half-configured)", "new": "1.0"}
    ]


def test_dpkg_alone_with_a_failed_postinst(root: Root) -> None:
    layer, _ = operation(root, ["dpkg", "-i", f"{FILES}/ashtest-fail_1.0_all.deb"], ok=False)
    assert layer is not None and layer["status"] == "failed"
    # Another package's install is not failed by the half-configured one.
    layer, _ = operation(root, ["dpkg", "-i", f"{FILES}/ashtest-a_1.0_all.deb"])
    assert layer is not None and layer["status"] == "committed"


def test_a_run_that_changes_nothing_leaves_no_layer(root: Root) -> None:
    install_first(root, "ashtest-a")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "ashtest-a"]):
        layer, _ = operation(root, command)
        assert layer is None, command


def test_opt_out_by_variable(root: Root) -> None:
    layer, done = operation(root, ["apt-get", "install", "-y", "ashtest-a"], env={"ASH_SKIP": "1"})
    assert layer is None and "ASH_SKIP" in done.stderr
    layer, _ = operation(
        root, ["dpkg", "-i", f"{FILES}/ashtest-v_1.0_all.deb"], env={"ASH_SKIP": "1"}
    )
    assert layer is None
    # What the skipped runs changed is kept as drift before the next layer.
    layer, _ = operation(
        root, ["apt-get", "install", "-y", "ashtest-b"], env={"ASH_NAME": "my b"}, drift=True
    )
    assert layer is not None and layer["name"] == "my b"


def test_opt_out_by_file(root: Root) -> None:
    conf = root.path / "etc/ash/hooks.d/apt.toml"
    conf.write_text('skip_packages = ["ashtest-v"]\n')
    layer, _ = operation(root, ["apt-get", "install", "-y", "ashtest-v"])
    assert layer is None
    layer, _ = operation(root, ["apt-get", "install", "-y", "ashtest-a"], drift=True)
    assert layer is not None
    conf.write_text("enabled = false\n")
    for command in (["apt-get", "install", "-y", "ashtest-b"], ["dpkg", "-r", "ashtest-b"]):
        layer, _ = operation(root, command)
        assert layer is None, command


def test_a_layer_that_cannot_be_made_stops_apt_before_any_change(root: Root) -> None:
    conf = root.path / "etc/ash/ash.toml"
    conf.chmod(0o666)  # refused, as sudo refuses a writable sudoers
    before = root.run(QUERY).stdout
    done = root.run(["apt-get", "install", "-y", "ashtest-a"], check=False)
    assert done.returncode != 0
    assert root.run(QUERY).stdout == before
    ours = [line for line in done.stderr.splitlines() if line.startswith("ashlayers:")]
    assert len(ours) == 1 and "writable by group or others" in ours[0], done.stderr
    done = root.run(["dpkg", "-i", f"{FILES}/ashtest-a_1.0_all.deb"], check=False)
    assert done.returncode != 0 and root.run(QUERY).stdout == before
    conf.chmod(0o644)
    layer, _ = operation(root, ["apt-get", "install", "-y", "ashtest-a"])
    assert layer is not None


def test_rollback_restores_the_package_database(root: Root) -> None:
    before = root.run(["dpkg-query", "-W"]).stdout
    layer, _ = operation(root, ["apt-get", "install", "-y", "ashtest-b"])
    assert layer is not None
    assert root.run(["dpkg-query", "-W"]).stdout != before
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ashcore.cli",
            "--root",
            str(root.path),
            "rollback",
            str(layer["parent"]),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert root.run(["dpkg-query", "-W"]).stdout == before
    assert not (root.path / "usr/share/ashtest/b").exists()
    # The next operation branches from there.
    layer, _ = operation(root, ["apt-get", "install", "-y", "ashtest-v"])
    assert layer is not None and layer["packages"]["added"] == [
        {"name": "ashtest-v", "version": "2.0"}
    ]


def test_leftover_hooks_are_harmless_once_ashlayers_is_gone(root: Root) -> None:
    root.run(["python3", "-m", "pip", "uninstall", "-y", "--break-system-packages", "ashlayers"])
    done = root.run(["apt-get", "install", "-y", "ashtest-a"])
    assert "ashlayers" not in done.stderr and "Traceback" not in done.stderr
    root.run(["rm", "/usr/libexec/ashlayers/apt-hook"])
    done = root.run(["dpkg", "-i", f"{FILES}/ashtest-v_1.0_all.deb"])
    assert "ashtest-v" in dpkg_packages(root)


def test_users_data_survives_a_rollback_and_is_never_drift(root: Root) -> None:
    """/home, /root and /var/log are subvolumes of their own: apt's own log, a user's file
    written after a layer and root's shell history all stay when the layer is rolled back."""
    for place in ("home", "root", "var/log"):
        assert os.path.ismount(root.path / place), place
    layer, _ = operation(root, ["apt-get", "install", "-y", "ashtest-b"])
    assert layer is not None
    root.run("mkdir -p /home/eve && echo draft > /home/eve/draft.txt && echo ls >> /root/.history")
    status = json.loads(root.ashctl("--json", "status").stdout)
    assert status["drift"] is False, status["drifted"]
    assert status["data"]["/home"] == "kept"
    logged = root.run(["cat", "/var/log/dpkg.log"]).stdout
    assert "install ashtest-b" in logged
    subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), "rollback", "1"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert not (root.path / "usr/share/ashtest/b").exists()  # the software went back
    assert root.run(["cat", "/home/eve/draft.txt"]).stdout == "draft\n"  # the data did not
    assert "ls" in root.run(["cat", "/root/.history"]).stdout
    assert root.run(["cat", "/var/log/dpkg.log"]).stdout.startswith(logged)
    names = [x["name"] for x in json.loads(root.ashctl("--json", "list").stdout)]
    assert not any("home" in n or "var/log" in n for n in names), names
