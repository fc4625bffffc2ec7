"""The boot tier: a qemu VM (TCG) boots the image; rollback, deploy and the boot menu are
checked across real reboots.

One VM per module; the tests run in order on it (each needs the state the previous left):
1. the first boot goes through ashlayers' menu (GRUB sources it from the store) into `@`;
2. `apt-get install` of a test package (from the image's local repo) makes a layer;
3. `ashctl rollback`, reboot: the rolled-back deployment is the root, without the package,
   and a file written in /home and /var/log after the layer is still there (users' data);
4. `ashctl try -- apt-get install`, `ashctl deploy`, reboot: the try is the root, with it;
5. a layer booted from the menu's submenu (GRUB hotkeys over the serial console) is a
   throwaway copy of it: its packages, an overlay root, nothing kept, no layer made;
6. the menu's "previous deployment" entry boots the way back; the deployment stays the
   default.

Run: `.venv/bin/pytest -m boot` (as root). Timings are printed in the session summary.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.boot.conftest import figure
from tests.boot.vm import VM

pytestmark = pytest.mark.boot

FIRST, TRIED, IN_COPY = "ashtest-a", "ashtest-v", "ashtest-b"
state: dict[str, Any] = {}


def root_mount(vm: VM) -> dict[str, str]:
    out = vm.run("findmnt --json -o SOURCE,FSTYPE,OPTIONS /").check().output
    fs = json.loads(out)["filesystems"][0]
    options = dict(([*o.split("=", 1), ""])[:2] for o in fs["options"].split(","))
    return {"source": fs["source"], "fstype": fs["fstype"], **options}


def installed(vm: VM, package: str) -> bool:
    out = vm.run(f"dpkg-query -W -f '${{Status}}' {package}").output
    return "install ok installed" in out


def ashctl_json(vm: VM, command: str) -> Any:
    return json.loads(vm.run(f"ashctl --json {command}").check().output)


def cmdline(vm: VM) -> str:
    return vm.run("cat /proc/cmdline").check().output.strip()


def failed_units(vm: VM) -> str:
    return vm.run("systemctl --failed --no-legend --plain").output.strip()


def timed_reboot(vm: VM, what: str, menu_keys: list[str] | None = None) -> None:
    boot = vm.reboot(menu_keys=menu_keys or [])
    figure(f"reboot ({what}) to the console in {boot.seconds:.1f} s (uptime {boot.uptime} s)")


def test_the_first_boot_goes_through_the_menu_in_the_store(vm: VM) -> None:
    state["tier_started"] = time.monotonic() - vm.boots[0].seconds
    root = root_mount(vm)
    assert root["fstype"] == "btrfs" and root["subvol"] == "/@", root
    # GRUB's own entries say rootflags=subvol=@; the menu ashlayers keeps says subvol=/@.
    assert "rootflags=subvol=/@ " in cmdline(vm) + " ", cmdline(vm)
    shown = ashctl_json(vm, "boot")
    assert shown["loader"] == "grub" and "rootflags=subvol=@" in shown["why"], shown
    assert shown["entries"][0]["key"] == "deployment" and shown["entries"][0]["subvolume"] == "@"
    st = ashctl_json(vm, "status")
    assert st["layer"] == 1 and st["drift"] is False and st["pending_reboot"] is False, str(st)
    assert [layer["name"] for layer in ashctl_json(vm, "list")] == ["base"]
    fstab_root = vm.run("awk '$2 == \"/\"' /etc/fstab").check().output
    assert "subvol" not in fstab_root, fstab_root
    assert failed_units(vm) == ""


def test_apt_install_makes_a_layer_the_menu_offers(vm: VM) -> None:
    vm.run(f"apt-get install -y {FIRST}").check()
    assert installed(vm, FIRST)
    layers = ashctl_json(vm, "list")
    assert len(layers) == 2 and FIRST in layers[-1]["name"], layers  # no drift layer
    state["first_layer"] = layers[-1]["id"]
    assert ashctl_json(vm, "status")["layer"] == state["first_layer"]
    offered = [e["layer"] for e in ashctl_json(vm, "boot")["entries"] if e["key"] == "layer"]
    assert offered == [state["first_layer"], 1], offered


DATA_PROOF = (
    ("/home/eve/notes.txt", "written after the layer"),
    ("/var/log/ash-proof.log", "a log line after the layer"),
)


def test_rollback_then_reboot_boots_the_deployment(vm: VM) -> None:
    # Users' data written after the layer: a rollback and a reboot must keep it.
    vm.run("mkdir -p /home/eve").check()
    for path, text in DATA_PROOF:
        vm.run(f"echo '{text}' >> {path}").check()
    vm.run("sync").check()
    out = vm.run("ashctl rollback").check().output
    assert "next boot" in out, out
    st = ashctl_json(vm, "status")
    assert st["pending_reboot"] is True and st["next_boot"] == 1, st
    deployment = ashctl_json(vm, "boot")["entries"][0]["subvolume"]
    assert deployment.startswith("@ash/deployments/"), deployment
    timed_reboot(vm, "after rollback")
    root = root_mount(vm)
    assert root["subvol"] == f"/{deployment}", root
    assert not installed(vm, FIRST)
    st = ashctl_json(vm, "status")
    assert st["layer"] == 1 and st["pending_reboot"] is False and st["drift"] is False, st
    assert vm.run("findmnt -no SOURCE /.ash").check().output.strip().endswith("[/@ash]")
    for path, text in DATA_PROOF:
        assert vm.run(f"cat {path}").check().output.strip() == text, path
    for place in ("/home", "/var/log", "/root"):
        source = vm.run(f"findmnt -no SOURCE {place}").check().output.strip()
        assert source.endswith(f"[/@ash/data{place}]"), (place, source)
    assert failed_units(vm) == ""
    state["rolled_back"] = deployment


def test_try_then_deploy_then_reboot_boots_the_try(vm: VM) -> None:
    vm.run(f"ashctl try -- apt-get install -y {TRIED}").check()
    assert not installed(vm, TRIED)  # the running root is untouched
    tried = ashctl_json(vm, "list")[-1]
    assert TRIED in tried["name"], tried
    out = vm.run(f"ashctl deploy {tried['id']}").check().output
    assert "next boot" in out, out
    deployment = ashctl_json(vm, "boot")["entries"][0]["subvolume"]
    assert "-try-layer" in deployment, deployment
    timed_reboot(vm, "after deploy")
    assert root_mount(vm)["subvol"] == f"/{deployment}"
    assert installed(vm, TRIED) and not installed(vm, FIRST)
    st = ashctl_json(vm, "status")
    assert st["layer"] == tried["id"] and st["pending_reboot"] is False, st
    state["tried"] = deployment


def test_a_layer_booted_from_the_menu_is_a_throwaway_copy(vm: VM) -> None:
    layer = state["first_layer"]
    offered = [e["layer"] for e in ashctl_json(vm, "boot")["entries"] if e["key"] == "layer"]
    hotkey = str(offered.index(layer) + 1)  # the submenu's entries are 1, 2, ... newest first
    timed_reboot(vm, f"layer {layer} from the menu", ["l", hotkey])
    assert f"ashlayers.layer={layer}" in cmdline(vm)
    assert root_mount(vm)["fstype"] == "overlay"
    assert installed(vm, FIRST) and not installed(vm, TRIED)  # that layer's packages
    st = ashctl_json(vm, "status")
    assert st["layer"] == layer and st["throwaway_boot"] is True, st
    before = len(ashctl_json(vm, "list"))
    vm.run("apt-get update -qq").check()  # apt's lists are a subvolume apart: empty in a layer
    out = vm.run(f"apt-get install -y {IN_COPY}").check().output
    assert "throwaway copy" in out and installed(vm, IN_COPY), out
    assert len(ashctl_json(vm, "list")) == before  # no layer of a copy
    refused = vm.run("ashctl rollback 1")
    assert refused.returncode == 2 and "throwaway copy" in refused.output, refused
    print(f"failed units in a throwaway copy: {failed_units(vm)!r}")


def test_the_previous_deployment_is_the_way_back_from_the_menu(vm: VM) -> None:
    timed_reboot(vm, "the previous deployment from the menu", ["p"])
    assert root_mount(vm)["subvol"] == f"/{state['rolled_back']}"
    assert not installed(vm, TRIED) and not installed(vm, IN_COPY)  # the copy kept nothing
    st = ashctl_json(vm, "status")
    # The deployment stays the default: the next plain boot starts the try again.
    assert st["layer"] == 1 and st["pending_reboot"] is True, st
    assert ashctl_json(vm, "boot")["entries"][0]["subvolume"] == state["tried"]
    figure(f"the whole tier took {time.monotonic() - state['tier_started']:.0f} s")
