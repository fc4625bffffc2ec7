"""Boot integration on a loop image whose root looks as Debian's does on btrfs: GRUB's
grub.cfg with `rootflags=subvol=@root`, kernels in /boot, fstab naming the subvolume.
(That GRUB boots what the menu says is the boot tier's proof, tests/boot.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.btrfs.conftest import Image, left_on_host

pytestmark = pytest.mark.btrfs

KERNELS = ("6.1.0-9-amd64", "6.10.0-1-amd64")


def debian_boot_files(root: Path, uuid: str) -> None:
    (root / "boot/grub").mkdir(parents=True)
    (root / "etc/initramfs-tools").mkdir(parents=True)
    for version in KERNELS:
        (root / f"boot/vmlinuz-{version}").write_text("kernel")
        (root / f"boot/initrd.img-{version}").write_text("initrd")
    (root / "boot/grub/grub.cfg").write_text(
        "set default=0\nmenuentry 'Debian GNU/Linux' {\n\tinsmod btrfs\n"
        f"\tlinux\t/@root/boot/vmlinuz-{KERNELS[1]} root=UUID={uuid} ro"
        " rootflags=subvol=@root,compress=zstd  console=ttyS0,115200 quiet\n"
        f"\tinitrd\t/@root/boot/initrd.img-{KERNELS[1]}\n}}\n"
    )
    (root / "etc/fstab").write_text(f"UUID={uuid} / btrfs subvol=@root,noatime 0 0\n")
    (root / "etc/os-release").write_text('NAME="Debian GNU/Linux"\n')


def fs_uuid(image: Image) -> str:
    return subprocess.run(
        ["blkid", "-p", "-s", "UUID", "-o", "value", image.device],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_setup_finds_grub_and_writes_a_menu_rollback_rewrites(image: Image) -> None:
    uuid = fs_uuid(image)
    debian_boot_files(image.root, uuid)
    out = image.ashctl("setup", check=True).stdout
    assert "boot: GRUB (/boot/grub/grub.cfg); its kernel line names rootflags=subvol=@root" in out
    assert f"run `update-grub` in {image.root}" in out  # not the running system: not run here
    # fstab's / line keeps its options but the subvolume, which no deployment but one is.
    assert (image.root / "etc/fstab").read_text().startswith(f"UUID={uuid}\t/\tbtrfs\tnoatime\t")
    for script in ("hooks/ashlayers", "scripts/local-bottom/ashlayers"):
        path = image.root / "etc/initramfs-tools" / script
        assert os.access(path, os.X_OK), path
    part = subprocess.run(
        ["sh", str(image.root / "etc/grub.d/09_ashlayers")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"search --no-floppy --fs-uuid --set=ashlayers {uuid}\n" in part
    assert 'source "($ashlayers)/@ash/boot/grub.cfg"' in part
    menu = (image.root / ".ash/boot/grub.cfg").read_text()
    assert (
        f"\tlinux ($ashlayers)/@root/boot/vmlinuz-{KERNELS[1]} root=UUID={uuid} ro"
        " rootflags=subvol=/@root,compress=zstd console=ttyS0,115200 quiet\n"
    ) in menu
    assert "--id ashlayers-layer-1 --hotkey=1" in menu  # the base layer, as a throwaway copy
    assert f"($ashlayers)/@ash/layers/1/boot/vmlinuz-{KERNELS[1]} " in menu
    assert "ashlayers-previous" not in menu  # no switch yet: no way back to offer

    for name in ("edit", "again"):
        image.ashctl(
            "run", "--name", name, "--", "touch", str(image.root / "etc" / name), check=True
        )
    menu = (image.root / ".ash/boot/grub.cfg").read_text()
    assert "--id ashlayers-layer-3 " in menu  # `ashctl run` rewrites it, as the hooks' helper
    broken = f"touch {image.root}/etc/broken; exit 3"
    assert image.ashctl("run", "--name", "broken", "--", "sh", "-c", broken).returncode == 3
    assert image.json("list")[-1]["status"] == "failed"  # type: ignore[index]
    menu = (image.root / ".ash/boot/grub.cfg").read_text()
    assert "ashlayers-layer-4" not in menu  # a failed layer is not offered to boot
    image.ashctl("rollback", "1", check=True)  # not booted: takes effect at once
    shown = image.json("boot")
    assert isinstance(shown, dict)
    keys = [(e["key"], e["subvolume"], e["layer"]) for e in shown["entries"]]
    deployment = keys[0][1]
    assert keys[0][0] == "deployment" and deployment.startswith("@ash/deployments/"), keys
    assert keys[1] == ("previous", "@root", None), keys  # read through the top level
    assert "the deployment, layer 1 (1-layer1, ashlayers)" in shown["entries"][0]["title"]
    assert keys[2:] == [("layer", f"@ash/layers/{n}", n) for n in (3, 2, 1)], keys
    menu = (image.root / ".ash/boot/grub.cfg").read_text()
    assert f"rootflags=subvol=/{deployment},compress=zstd" in menu
    assert menu.index(deployment) < menu.index("--id ashlayers-previous")
    assert not left_on_host(image.root / ".ash")  # the top level's mount is gone

    # The menu follows the store: a pruned layer's entry goes; the way back is not unused.
    image.ashctl("prune", "--keep", "0", "--dry-run", check=True)
    pruned = image.ashctl("prune", "--keep", "0", check=True).stdout
    assert "layer 2" in pruned, pruned
    menu = (image.root / ".ash/boot/grub.cfg").read_text()
    assert "ashlayers-layer-1" in menu and "ashlayers-layer-2" not in menu, menu
    assert "unused" not in image.ashctl("doctor", check=True).stdout


def test_a_root_without_grub_is_told_and_left_alone(image: Image) -> None:
    out = image.ashctl("setup", check=True).stdout
    assert "boot: no GRUB configuration found: rollback sets the default subvolume only" in out
    assert not (image.root / "etc/grub.d").exists()
    assert json.loads(image.ashctl("boot", "--json", check=True).stdout)["entries"] == []
