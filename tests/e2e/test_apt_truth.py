"""A layer holds its operation's changes and nothing else, as users and scripts run apt.

Real apt, python-apt and aptitude in the sid root: an edit made right after apt returns, a
front end that runs dpkg twice with a pause between, `apt-mark hold`, a helper killed with
its manager's unit, aptitude's own start-up writes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.root import Root, chroot_env
from tests.e2e.test_apt import dpkg_packages, layers

pytestmark = pytest.mark.e2e


def snapshot_of(root: Root, layer: dict[str, Any]) -> Path:
    return root.path / ".ash/layers" / str(layer["id"])


def new_layers(root: Root, known: set[int]) -> list[dict[str, Any]]:
    return [layer for layer in layers(root) if layer["id"] not in known]


def test_an_edit_made_right_after_apt_returns_is_drift_not_part_of_its_layer(root: Root) -> None:
    """`apt-get install -y X; echo $i > /etc/after-$i`: the edit is never in apt's layer; the
    next operation keeps it as a drift layer of its own."""
    commands = ["apt-get install -y ashtest-a", "apt-get remove -y ashtest-a"] * 2
    for i, command in enumerate(commands):
        known = {layer["id"] for layer in layers(root)}
        root.run(f"{command} >/dev/null && echo {i} > /etc/after-{i}")
        made = new_layers(root, known)
        apt = [layer for layer in made if layer["manager"] == "apt"]
        assert len(apt) == 1, made
        assert not (snapshot_of(root, apt[0]) / f"etc/after-{i}").exists(), i
        if i > 0:  # the edit after the previous run came first, as drift
            assert made[0]["status"] == "drift" and made[0]["id"] == apt[0]["parent"], made
            assert (snapshot_of(root, made[0]) / f"etc/after-{i - 1}").read_text() == f"{i - 1}\n"
        else:
            assert made == apt


PYTHON_APT_TWO_COMMITS = """
import time
import apt

cache = apt.Cache()
cache["ashtest-a"].mark_install()
cache.commit()
time.sleep(1)  # shorter than a helper waits for a quiet manager (linger.SETTLE)
cache.open()
cache["ashtest-v"].mark_install()
cache.commit()
"""
# A slow hook of another package's, after ashlayers' pre hook: the second dpkg run is still
# being prepared when a helper that waited SETTLE seconds would take its snapshot.
SLOW_HOOK = 'DPkg::Pre-Install-Pkgs { "sleep 1.5; cat >/dev/null"; };\n'


def test_a_front_end_that_runs_dpkg_twice_gets_whole_layers(root: Root) -> None:
    """One python-apt process, two `cache.commit()` calls a second apart (as
    unattended-upgrades does): whole layers, never one cut in the middle of a run."""
    (root.path / "etc/apt/apt.conf.d/zz-slow").write_text(SLOW_HOOK)
    known = {layer["id"] for layer in layers(root)}
    before = dpkg_packages(root)
    root.run(["python3", "-c", PYTHON_APT_TWO_COMMITS])
    after = dpkg_packages(root)
    assert set(after) - set(before) == {"ashtest-a", "ashtest-v"}
    root.run(["ashctl", "status"])  # waits for the helper
    made = new_layers(root, known)
    assert made[0]["name"] == "drift: etc/apt/apt.conf.d/zz-slow", made  # the hook file
    made = made[1:]
    assert made and all(layer["manager"] == "apt" for layer in made), made
    added = sorted(d["name"] for layer in made for d in layer["packages"]["added"])
    assert added == ["ashtest-a", "ashtest-v"], made
    for layer in made:
        snapshot = snapshot_of(root, layer)
        leftovers = [p for p in snapshot.rglob("*.dpkg-new")] + [
            p for p in (snapshot / "var/lib/dpkg/updates").iterdir() if p.name != "tmp.i"
        ]
        assert leftovers == [], (layer, leftovers)
    assert (snapshot_of(root, made[-1]) / "usr/share/ashtest/v").exists()
    assert root.ashctl_json("status")["drift"] is False


def test_apt_mark_hold_is_drift_and_a_rollback_keeps_it(root: Root) -> None:
    """A change to the package database alone (`apt-mark hold`) is drift: kept as a layer
    before the next operation, and kept by a rollback of the state it is in."""
    root.run(["apt-get", "install", "-y", "ashtest-a"])
    assert root.ashctl_json("status")["drift"] is False
    root.run(["apt-mark", "hold", "ashtest-a"])
    assert root.ashctl_json("status")["drift"] is True
    known = {layer["id"] for layer in layers(root)}
    root.run(["apt-get", "install", "-y", "ashtest-v"])
    made = new_layers(root, known)
    assert [layer["status"] for layer in made] == ["drift", "committed"], made
    assert made[0]["name"] == "drift: hold ashtest-a", made  # not dpkg's paths
    status = (snapshot_of(root, made[0]) / "var/lib/dpkg/status").read_text()
    assert "Package: ashtest-a\nStatus: hold ok installed" in status
    # Released again, then rolled back: the state left (the release) is kept as a layer.
    root.run(["apt-mark", "unhold", "ashtest-a"])
    known = {layer["id"] for layer in layers(root)}
    subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), "rollback", "1"],
        check=True,
        capture_output=True,
    )
    kept = new_layers(root, known)
    assert [(x["status"], x["name"]) for x in kept] == [("drift", "drift: unhold ashtest-a")]
    status = (snapshot_of(root, kept[0]) / "var/lib/dpkg/status").read_text()
    assert "Package: ashtest-a\nStatus: install ok installed" in status


def test_a_mark_and_a_selection_are_named_for_what_they_did(root: Root) -> None:
    """`apt-mark auto` and `manual` (apt's extended_states), `dpkg --set-selections` (dpkg's
    status), a hold beside a hand edit: each kept as drift by the next operation, and named
    for what it did."""
    root.run(["apt-get", "install", "-y", "ashtest-b"])  # ashtest-a comes automatically
    steps = (
        ("apt-mark auto ashtest-b", "drift: mark auto ashtest-b"),
        ("apt-mark manual ashtest-a", "drift: mark manual ashtest-a"),
        ("echo 'ashtest-b deinstall' | dpkg --set-selections", "drift: select deinstall ashtest-b"),
        ("apt-mark hold ashtest-a && echo x > /etc/edited", "drift: hold ashtest-a, etc/edited"),
    )
    for number, (change, named) in enumerate(steps):
        root.run(change)
        known = {layer["id"] for layer in layers(root)}
        root.run(["apt-get", "remove" if number % 2 else "install", "-y", "ashtest-v"])
        made = new_layers(root, known)
        assert (made[0]["status"], made[0]["name"]) == ("drift", named), made


def test_a_helper_killed_with_its_managers_unit_still_leaves_the_whole_layer(
    root: Root,
) -> None:
    """systemd kills a unit's whole cgroup once its main process exits: the helper dies
    before it describes the layer. The layer was sealed in apt's post hook; the next
    operation describes it: committed, with its package delta."""
    kill = root.path / "etc/apt/apt.conf.d/zz-kill-helper"
    kill.write_text('DPkg::Post-Invoke { "read -r h o < /.ash/run/commit; kill -9 ${h%%:*}"; };\n')
    root.run(["apt-get", "install", "-y", "ashtest-a"])
    kill.unlink()
    assert root.ashctl_json("status")["pending"]["alive"] is False
    root.run(["apt-get", "install", "-y", "ashtest-v"])
    found = [
        (x["name"], x["status"], [d["name"] for d in x["packages"]["added"]]) for x in layers(root)
    ]
    assert found[-3:] == [
        ("apt-get install ashtest-a", "committed", ["ashtest-a"]),  # sealed, then described
        ("drift: etc/apt/apt.conf.d/zz-kill-helper", "drift", []),  # the unlink above
        ("apt-get install ashtest-v", "committed", ["ashtest-v"]),
    ], found


def test_aptitude_makes_one_layer_and_no_drift_of_its_own(root: Root) -> None:
    """aptitude writes its states and apt's extended_states as it starts, before the pre
    hook: those writes belong to its own layer, not to a drift layer before it."""
    for command in ("install", "remove", "install"):
        known = {layer["id"] for layer in layers(root)}
        root.run(["aptitude", command, "-y", "ashtest-b"])
        made = new_layers(root, known)
        assert [(layer["manager"], layer["status"]) for layer in made] == [("apt", "committed")], (
            command,
            made,
        )
        names = sorted(
            d["name"] for d in made[0]["packages"]["added" if command == "install" else "removed"]
        )
        assert "ashtest-b" in names


def test_the_managers_output_names_the_layer(root: Root) -> None:
    """As snap-pac prints its snapshot numbers: the post hook says which layer it sealed."""
    done = root.run(["apt-get", "install", "-y", "ashtest-a"])
    assert 'ashlayers: layer 2 "apt-get install ashtest-a"' in done.stderr + done.stdout
    done = root.run(["pacman", "-S", "--noconfirm", "ashtest-v"])
    assert 'ashlayers: layer 3 "pacman -S ashtest-v"' in done.stderr + done.stdout


PYTHON_APT_SCRIPT = """
import apt

cache = apt.Cache()
cache["ashtest-a"].mark_install()
cache.commit()
"""


def test_a_python_apt_script_started_by_another_python_program_owns_its_layer(
    root: Root,
) -> None:
    """`python3 -c "subprocess.run(['python3', 'pyapt.py'])"`: the parent has the same name
    but is another program; the layer is the script's, not `python3 -c`."""
    (root.path / "pyapt.py").write_text(PYTHON_APT_SCRIPT)
    root.run(["python3", "-c", "import subprocess; subprocess.run(['python3', '/pyapt.py'])"])
    root.run(["ashctl", "status"])  # waits for the helper
    made = layers(root)[-1]
    assert made["name"] == "python3 pyapt.py", made
    assert [d["name"] for d in made["packages"]["added"]] == ["ashtest-a"], made


def test_a_python_apt_script_run_in_a_chroot_by_a_host_program_is_the_owner(root: Root) -> None:
    """An image builder on the host runs `chroot R python3 pyapt.py` and lives on: the
    process above the chroot is never the owner (another root), so the layer is named after
    the script and a later operation is not refused while the builder lives."""
    (root.path / "pyapt.py").write_text(PYTHON_APT_SCRIPT)
    builder = (
        "import subprocess, sys, time\n"
        f"subprocess.run(['chroot', {str(root.path)!r}, 'python3', '/pyapt.py'], check=True,"
        " capture_output=True)\n"
        "print('done', flush=True)\n"
        "time.sleep(600)\n"
    )
    host = subprocess.Popen(
        ["/usr/bin/python3", "-c", builder],
        env=chroot_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert host.stdout is not None and host.stdout.readline() == "done\n"
        root.run(["apt-get", "install", "-y", "ashtest-v"], timeout=120)
        found = [(x["name"], x["status"]) for x in layers(root)]
        assert found[-2:] == [
            ("python3 pyapt.py", "committed"),
            ("apt-get install ashtest-v", "committed"),
        ], found
    finally:
        host.kill()
        host.wait()


def test_aptitudes_states_stay_out_of_its_layers(root: Root) -> None:
    """aptitude rewrites /var/lib/aptitude/pkgstates (and .old) on every run, 7.9 MB each with
    sid's lists: a folder kept out of layers (a subvolume of its own), as apt's lists are."""
    for command in ("install", "remove"):
        root.run(["aptitude", command, "-y", "ashtest-b"])
    assert (root.path / "var/lib/aptitude/pkgstates").exists()
    made = layers(root)[1:]
    assert [x["status"] for x in made] == ["committed", "committed"], made
    for layer in made:
        assert not (snapshot_of(root, layer) / "var/lib/aptitude/pkgstates").exists(), layer
    assert (snapshot_of(root, made[-1]) / "var/lib/dpkg/status").exists()
