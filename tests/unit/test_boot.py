"""The boot menu's pure parts: the kernel line read, the menu written, the kernel chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from ashcore.boot import menu, setup, state
from ashcore.boot.menu import Entry
from ashcore.boot.state import BootSetup

FOUND = BootSetup(
    loader="grub",
    why="GRUB",
    fs_uuid="1234-abcd",
    root_arg="root=UUID=1234-abcd",
    rootflags=("compress=zstd",),
    args=("console=ttyS0,115200", "quiet"),
    named_subvolume="@",
)


def test_the_kernel_line_is_split_into_what_ashlayers_keeps_and_what_it_writes() -> None:
    words = [
        "/@/boot/vmlinuz-6.1",
        "root=UUID=u",
        "ro",
        "rootflags=subvol=@,compress=zstd",
        "quiet",
    ]
    assert setup.split_kernel_line(words) == ("root=UUID=u", ("compress=zstd",), ("quiet",), "@")
    proc = "BOOT_IMAGE=/x/vmlinuz root=/dev/vda2 rw rootflags=subvolid=256 ashlayers.layer=3 a=b"
    assert setup.split_kernel_line(proc.split()) == ("root=/dev/vda2", (), ("a=b",), None)


def test_the_first_linux_line_of_grub_cfg_is_the_default_entrys(tmp_path: Path) -> None:
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(
        "menuentry 'Debian' {\n\tinsmod btrfs\n"
        "\tlinux\t/@/boot/vmlinuz-6.1 root=UUID=u ro rootflags=subvol=@ 'a b'\n}\n"
        "menuentry 'recovery' {\n\tlinux /@/boot/vmlinuz-6.1 single\n}\n"
    )
    assert setup.kernel_line(str(cfg)) == [
        "/@/boot/vmlinuz-6.1",
        "root=UUID=u",
        "ro",
        "rootflags=subvol=@",
        "a b",
    ]


def test_the_newest_kernel_with_its_initramfs_is_chosen(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    for name in (
        "vmlinuz-6.1.0-9-amd64",
        "initrd.img-6.1.0-9-amd64",
        "vmlinuz-6.10.0-1-amd64",
        "initrd.img-6.10.0-1-amd64",
        "vmlinuz-6.12.0-1-amd64",
        "config-6.12.0-1-amd64",
    ):
        (tmp_path / "boot" / name).write_text("")
    assert menu.kernel_of(str(tmp_path)) == "6.10.0-1-amd64"  # 6.12 has no initramfs
    assert menu.kernel_of(str(tmp_path / "nothing")) is None


def test_the_menu_boots_the_deployment_by_default_and_layers_as_throwaway_copies() -> None:
    entries = [
        Entry(
            "deployment",
            "Debian: the deployment, layer 7",
            "@ash/deployments/3-layer7",
            "6.1",
            None,
        ),
        Entry("previous", "Debian: the previous deployment", "@", "6.1", None),
        Entry("layer", "layer 7: apt-get install it's", "@ash/layers/7", "6.1", 7),
        Entry("layer", "layer 6: x", "@ash/layers/6", "6.0", 6),
    ]
    text = menu.menu_text(FOUND, entries)
    assert "search --no-floppy --fs-uuid --set=ashlayers 1234-abcd\n" in text
    assert text.endswith('if [ -z "${boot_once}" ]; then\n  set default=ashlayers-deployment\nfi\n')
    assert (
        "menuentry 'Debian: the deployment, layer 7' --id ashlayers-deployment {\n"
        "\tlinux ($ashlayers)/@ash/deployments/3-layer7/boot/vmlinuz-6.1 root=UUID=1234-abcd ro"
        " rootflags=subvol=/@ash/deployments/3-layer7,compress=zstd console=ttyS0,115200 quiet\n"
        "\tinitrd ($ashlayers)/@ash/deployments/3-layer7/boot/initrd.img-6.1\n}\n"
    ) in text
    assert "--id ashlayers-previous --hotkey=p {" in text
    assert "rootflags=subvol=/@," in text
    # A quote in a layer's name cannot end GRUB's word early.
    assert (
        "menuentry 'layer 7: apt-get install it'\\''s' --id ashlayers-layer-7 --hotkey=1 {" in text
    )
    layer6 = text[text.index("ashlayers-layer-6") :]
    assert "--hotkey=2" in layer6.splitlines()[0]
    assert "rootflags=subvol=/@ash/layers/6,compress=zstd console=ttyS0,115200 quiet" in layer6
    assert "ashlayers.layer=6\n" in layer6
    assert text.count(" {\n") == text.count("}\n") == 5  # 4 entries and the submenu


def test_a_menu_without_layers_has_no_submenu() -> None:
    text = menu.menu_text(FOUND, [Entry("deployment", "d", "@", "6.1", None)])
    assert "submenu" not in text and "set default=ashlayers-deployment" in text


def test_fstab_keeps_the_root_line_but_its_subvolume(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    fstab = tmp_path / "etc/fstab"
    fstab.write_text(
        "# / was on /dev/vda2\nUUID=u / btrfs subvol=@,noatime 0 0\n"
        "UUID=u /home btrfs subvol=@home 0 0\n#UUID=u / btrfs subvol=@ 0 0\n"
    )
    assert setup._drop_root_subvolume_from_fstab(str(tmp_path))
    assert fstab.read_text() == (
        "# / was on /dev/vda2\nUUID=u\t/\tbtrfs\tnoatime\t0\t0\n"
        "UUID=u /home btrfs subvol=@home 0 0\n#UUID=u / btrfs subvol=@ 0 0\n"
    )
    assert not setup._drop_root_subvolume_from_fstab(str(tmp_path))  # once


def test_no_mark_no_throwaway_boot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(state, "THROWAWAY_MARK", str(tmp_path / "mark"))
    assert state.throwaway_layer() is None
    (tmp_path / "mark").write_text("7\n")
    assert state.throwaway_layer() == 7


def _grub_script_check(text: str, tmp_path: Path) -> None:
    """GRUB's own parser reads `text` without a syntax error (grub-common's
    grub-script-check; tests/host-deps.sh installs it)."""
    import shutil
    import subprocess

    checker = shutil.which("grub-script-check")
    if checker is None:
        pytest.skip("grub-script-check is missing: install grub-common (tests/host-deps.sh)")
    script = tmp_path / "menu.cfg"
    script.write_text(text)
    result = subprocess.run([checker, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout, result.stderr, text)


HOSTILE = BootSetup(
    loader="grub",
    why="GRUB",
    fs_uuid="1234-abcd",
    root_arg="root=UUID=1234-abcd",
    rootflags=("compress=zstd",),
    args=("quiet", "acpi_osi=Windows 2020", "it's", "$vt_handoff", "x}y{z;#"),
    named_subvolume="@",
)


def test_everything_in_the_menu_is_quoted_for_grub(tmp_path: Path) -> None:
    """A kernel named with `}` and a quote, a title with GRUB's specials and a newline, a
    kernel argument with a space: GRUB's parser reads the menu, each one word."""
    entries = [
        Entry("deployment", "Debian: the deployment", "@ash/deployments/3-layer7", "6.1}", None),
        Entry("previous", "it's $(x) {y}\nz", "@", "6.1 o'k", None),
        Entry("layer", "layer 7: a;b", "@ash/layers/7", "6.1'}\"$x", 7),
    ]
    text = menu.menu_text(HOSTILE, entries)
    _grub_script_check(text, tmp_path)
    assert (
        "\tlinux ($ashlayers)'/@ash/deployments/3-layer7/boot/vmlinuz-6.1}' root=UUID=1234-abcd"
        " ro rootflags=subvol=/@ash/deployments/3-layer7,compress=zstd quiet"
        " 'acpi_osi=Windows 2020' 'it'\\''s' $vt_handoff 'x}y{z;#'\n"
        "\tinitrd ($ashlayers)'/@ash/deployments/3-layer7/boot/initrd.img-6.1}'\n"
    ) in text
    assert "menuentry 'it'\\''s $(x) {y}\\x0az' --id ashlayers-previous" in text
    assert "($ashlayers)'/@/boot/vmlinuz-6.1 o'\\''k'" in text
    assert "($ashlayers)'/@ash/layers/7/boot/vmlinuz-6.1'\\''}\"$x' " in text
    assert text.count("menuentry ") == 3


def test_an_entry_grub_cannot_hold_is_left_out_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = [
        Entry("deployment", "the deployment", "@ash/deployments/3-layer7", "6.1", None),
        Entry("layer", "layer 7", "@ash/layers/7", "6.1\n}", 7),
        Entry("layer", "layer 6", "@ash/layers/6", "6.0", 6),
    ]
    text = menu.menu_text(HOSTILE, entries)
    _grub_script_check(text, tmp_path)
    assert "ashlayers-layer-7" not in text and "ashlayers-layer-6" in text
    assert "set default=ashlayers-deployment" in text
    assert "layer 7 is left out of the boot menu" in caplog.text
    # Without the deployment's entry, nothing names it the default.
    text = menu.menu_text(HOSTILE, [Entry("deployment", "d", "@\n", "6.1", None)])
    _grub_script_check(text, tmp_path)
    assert "menuentry" not in text and "set default" not in text


def test_a_kernel_whose_name_grub_cannot_hold_is_passed_over_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "boot").mkdir()
    for version in ("6.1.0-9-amd64", "6.12.0-1\nevil", "6.11}x"):
        (tmp_path / "boot" / f"vmlinuz-{version}").write_text("")
        (tmp_path / "boot" / f"initrd.img-{version}").write_text("")
    assert menu.kernel_of(str(tmp_path)) == "6.11}x"  # the newest with a name GRUB can hold
    assert "vmlinuz-6.12.0-1\\x0aevil" in caplog.text and "left out" in caplog.text
