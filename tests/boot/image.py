"""The boot tier's disk: a raw image that qemu boots, built once and cached.

    python3 -m tests.boot.image build   # build what is missing, print the figures and the path
    python3 -m tests.boot.image clean   # remove /var/tmp/ashlayers-boot (ASH_BOOT_DIR)

Two levels, each keyed on what makes it (like the e2e rig's layers):
  system  `mmdebstrap` of Debian sid with a kernel, GRUB, systemd and the project's runtime
          (key: the package list and options below), kept as system-<key>.tar.zst
  disk    disk-<key>.img (key: system + this file + the project's files, see
          tests.e2e.rig.project_key): the system on a fresh disk, the project pip-installed,
          a local apt repo of the rig's test packages, GRUB installed, `ashctl setup` run

The disk (4 GiB sparse, GPT):
  p1  1 MiB   BIOS boot partition (GRUB's core.img; qemu's SeaBIOS boots it)
  p2  rest    btrfs, label ashboot; the root is subvolume `@`, the top level stays the
              default subvolume (as Debian's installer leaves it), GRUB's kernel line says
              `rootflags=subvol=@` (grub-mkconfig writes that by itself for a root on a
              subvolume) and fstab mounts `/` with `subvol=@`. `ashctl setup` adds the
              store `@ash` beside it, mounted at /.ash.
Chosen so the tier boots the layout users have: what ashlayers must change for a rollback
to take effect at boot is then measured, not assumed (see tests/boot/README.md).

In the guest: no network; serial console ttyS0 (GRUB and kernel); instead of a getty,
`ash-console.service` runs a root shell on ttyS0 without login or PAM, after printing
READY_MARKER (tests.boot.vm talks to it). apt sees only file:/srv/ashtest/deb.

Every mount is made in a private mount namespace; the loop device is detached on every path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e import packages
from tests.e2e.base import digest, mirror, retry
from tests.e2e.command import RigError, run
from tests.e2e.image import lock_file, unlock_file
from tests.e2e.mounts import enter_private_namespace, mount, unmount_below
from tests.e2e.rig import PROJECT, PROJECT_FILES, project_key
from tests.e2e.root import mount_api, run_in

DEFAULT_DIR = "/var/tmp/ashlayers-boot"
DISK_SIZE = "4G"
LABEL = "ashboot"
READY_MARKER = "ASH-VM-READY"
SUITE = "sid"

SYSTEM_PACKAGES = (
    *("linux-image-amd64", "initramfs-tools", "zstd", "grub-pc", "systemd-sysv", "udev"),
    *("mount", "util-linux", "kmod", "procps", "btrfs-progs"),
    *("python3-btrfsutil", "python3-apt", "python3-pip", "python3-setuptools"),
)
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    '--aptopt=Acquire::Check-Valid-Until "false"',
    '--aptopt=Acquire::Retries "5"',
    '--aptopt=Acquire::http::Timeout "30"',
    "--dpkgopt=force-unsafe-io",
)
# A small initramfs: only what finds a btrfs root on a virtio disk (MODULES=most makes GRUB
# read tens of MB through the BIOS under TCG). Written before the kernel is installed.
INITRAMFS_CONF = "MODULES=list\nCOMPRESS=zstd\n"
INITRAMFS_HOOK = """#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_blk virtio_scsi sd_mod ata_piix btrfs crc32c_generic; do
    manual_add_modules "$m"
done
"""
SETUP_HOOKS = (
    '--setup-hook=mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"',
    f"--setup-hook=printf '{INITRAMFS_CONF}' > \"$1/etc/initramfs-tools/conf.d/ashboot\"",
    "--setup-hook=cat > \"$1/etc/initramfs-tools/hooks/ashboot\" <<'EOF'\n"
    f'{INITRAMFS_HOOK}EOF\nchmod 755 "$1/etc/initramfs-tools/hooks/ashboot"',
)

GRUB_DEFAULT = """\
GRUB_DEFAULT=0
GRUB_TIMEOUT=3
GRUB_TIMEOUT_STYLE=menu
GRUB_DISTRIBUTOR=Debian
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 loglevel=4 systemd.show_status=false"
GRUB_DISABLE_OS_PROBER=true
GRUB_DISABLE_RECOVERY=true
"""

CONSOLE_SCRIPT = f"""#!/bin/sh
# The boot tier's console: a root shell on ttyS0, no login. tests/boot/vm.py waits for the
# marker, then sends commands (no echo, no line editing) and reads their output.
stty -echo 2>/dev/null
dmesg -n 1 2>/dev/null
printf '\\n{READY_MARKER} %s %s\\n' "$(cat /proc/sys/kernel/random/boot_id)" \\
    "$(cut -d' ' -f1 /proc/uptime)"
exec /bin/bash --noprofile --norc --noediting +o history -i
"""

CONSOLE_UNIT = """\
[Unit]
Description=ashlayers boot tier console on ttyS0
After=local-fs.target systemd-user-sessions.service
Conflicts=serial-getty@ttyS0.service

[Service]
Type=idle
ExecStart=/usr/local/sbin/ash-console
StandardInput=tty-force
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=yes
Environment=PS1= PS2= TERM=dumb HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
Restart=no
# an interactive bash ignores SIGTERM: without these a reboot waits 90 s for it
KillSignal=SIGHUP
TimeoutStopSec=5

[Install]
WantedBy=multi-user.target
"""

# What the project needs in the guest, beyond the system: the rig's deb test packages.
TEST_DEBS = tuple(r for r in packages.RECIPES if not r.fails)


def say_stderr(message: str) -> None:
    print(f"[boot] {message}", file=sys.stderr, flush=True)


def boot_dir() -> Path:
    return Path(os.path.abspath(os.environ.get("ASH_BOOT_DIR", DEFAULT_DIR)))


def system_key() -> str:
    recipe = {
        "suite": SUITE,
        "packages": sorted(SYSTEM_PACKAGES),
        "options": MMDEBSTRAP_OPTIONS,
        "hooks": SETUP_HOOKS,
        "arch": platform.machine(),
        "recipe": 1,
    }
    return digest(json.dumps(recipe, sort_keys=True))


def disk_key(system: str) -> str:
    here = Path(__file__).read_text()
    debs = Path(packages.__file__).read_text()
    return digest(project_key(system), here, debs)


def missing_tools() -> list[str]:
    tools = ("mmdebstrap", "mkfs.btrfs", "sfdisk", "losetup", "zstd", "tar", "dpkg-deb")
    return [t for t in tools if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]


class Built:
    """The result: the image's path and how long each level took (0 when cached)."""

    def __init__(self, path: Path, timings: dict[str, float]) -> None:
        self.path = path
        self.timings = timings


def build(say=say_stderr) -> Built:  # type: ignore[no-untyped-def]
    """Build what is missing; return the cached disk image (RigError on failure)."""
    if os.geteuid() != 0:
        raise RigError("building the boot image needs root (loop devices, mounts, chroot)")
    if missing := missing_tools():
        raise RigError(f"host tools missing: {' '.join(missing)} (run tests/host-deps.sh)")
    enter_private_namespace()
    folder = boot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    lock = lock_file(folder / "lock", 3600, f"the boot image dir {folder}", say)
    try:
        syskey = system_key()
        tarball = folder / f"system-{syskey}.tar.zst"
        if not tarball.exists():
            started = time.monotonic()
            _bootstrap(tarball, folder, say)
            timings["system"] = time.monotonic() - started
            say(f"system ready in {timings['system']:.1f} s ({tarball})")
            for old in folder.glob("system-*.tar.zst"):
                if old != tarball:
                    old.unlink()
        image = folder / f"disk-{disk_key(syskey)}.img"
        if not image.exists():
            started = time.monotonic()
            _make_disk(tarball, image, folder, say)
            timings["disk"] = time.monotonic() - started
            say(f"disk ready in {timings['disk']:.1f} s ({image})")
            for old in folder.glob("disk-*.img"):
                if old != image:
                    old.unlink()
        return Built(image, timings)
    finally:
        unlock_file(lock)


def _bootstrap(tarball: Path, folder: Path, say) -> None:  # type: ignore[no-untyped-def]
    url = mirror()
    partial = folder / f".{tarball.name}.partial.tar.zst"
    say(f"mmdebstrap {SUITE} from {url} (kernel, grub-pc, systemd, python3-btrfsutil ...)")

    def bootstrap() -> None:
        run(
            [
                "mmdebstrap",
                *MMDEBSTRAP_OPTIONS,
                *SETUP_HOOKS,
                f"--include={','.join(SYSTEM_PACKAGES)}",
                SUITE,
                str(partial),
                url,
            ],
            timeout=1800,
        )

    try:
        retry(
            f"mmdebstrap of Debian {SUITE} from {url}",
            say,
            bootstrap,
            lambda: partial.unlink(missing_ok=True),
        )
        partial.rename(tarball)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def attached(image: Path, offset: int = 0, size: int = 0) -> Iterator[str]:
    """A loop device on image (from offset, size bytes if given); always detached again.

    Partitions get a loop device of their own (--offset): the kernels of these machines
    have no partition table support (no loopNpM nodes) and no device mapper (no kpartx)."""
    argv = ["losetup", "--find", "--show"]
    if offset:
        argv += ["--offset", str(offset)]
    if size:
        argv += ["--sizelimit", str(size)]
    device = run([*argv, str(image)]).stdout.strip()
    try:
        yield device
    finally:
        run(["losetup", "--detach", device], check=False)


def _partition(image: Path, number: int) -> tuple[int, int]:
    """(offset, size) in bytes of partition `number` (from 1) of image's table."""
    table = json.loads(run(["sfdisk", "--json", str(image)]).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    part = table["partitions"][number - 1]
    return part["start"] * sector, part["size"] * sector


def _make_disk(tarball: Path, image: Path, folder: Path, say) -> None:  # type: ignore[no-untyped-def]
    partial = image.with_name(f".{image.name}.partial")
    mnt = folder / "mnt"
    top, root = mnt / "top", mnt / "root"
    partial.unlink(missing_ok=True)
    run(["truncate", "-s", DISK_SIZE, str(partial)])
    run(
        ["sfdisk", "--quiet", "--label", "gpt", str(partial)],
        input="start=2048, size=2048, type=21686148-6E6F-744E-6564-4D6F6F746F6F, name=bios\n"
        "start=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n",
    )
    try:
        offset, size = _partition(partial, 2)
        with attached(partial, offset, size) as part:
            run(["mkfs.btrfs", "-q", "-L", LABEL, part])
            uuid = run(["blkid", "-p", "-s", "UUID", "-o", "value", part]).stdout.strip()
            top.mkdir(parents=True, exist_ok=True)
            root.mkdir(parents=True, exist_ok=True)
            try:
                mount(part, top)
                run(["btrfs", "-q", "subvolume", "create", str(top / "@")])
                mount(part, root, "subvol=@")
                say(f"unpacking {tarball.name} into subvolume @")
                run(
                    ["tar", "-C", str(root), "--numeric-owner", "--xattrs",
                     "--xattrs-include=*", "--acls", "-I", "zstd -T0", "-xpf", str(tarball)],
                    timeout=600,
                )  # fmt: skip
                _configure(root, uuid)
                mount_api(root)
                _install(root, part, uuid, say)
                core = (root / "boot/grub/i386-pc/core.img").read_bytes()
                boot = (root / "usr/lib/grub/i386-pc/boot.img").read_bytes()
            finally:
                unmount_below(mnt)
        _embed_grub(partial, boot, core)
        partial.rename(image)
    finally:
        partial.unlink(missing_ok=True)


# GRUB for BIOS, put in place as grub-bios-setup does (it needs the disk's partitions as
# block devices, which these kernels cannot give): boot.img in the MBR's code area, pointing
# at core.img in the BIOS boot partition; core.img's first sector (diskboot) loads the rest.
BIOS_BOOT_LBA = 2048
BIOS_BOOT_SECTORS = 2048
_KERNEL_SECTOR = 0x5C  # boot.img: the LBA of core.img's first sector (u64)
_DRIVE_CHECK = 0x66  # boot.img: a jmp that nop'd makes it trust the BIOS's drive in DL
_BPB = (0x03, 0x5A)  # boot.img: a DOS BPB area, kept from the disk
_PART_TABLE = (0x1B8, 0x200)  # the MBR's disk signature, partition table and 55aa, kept
_BLOCKLIST = 0x200 - 12  # diskboot: the first blocklist entry (start u64, len u16, seg u16)


def _embed_grub(disk: Path, boot: bytes, core: bytes) -> None:
    sectors = -(-len(core) // 512)
    if sectors > BIOS_BOOT_SECTORS or len(boot) != 512:
        raise RigError(f"core.img of {sectors} sectors does not fit the BIOS boot partition")
    core = core.ljust(sectors * 512, b"\0")
    block = bytearray(core[:512])
    block[_BLOCKLIST : _BLOCKLIST + 8] = (BIOS_BOOT_LBA + 1).to_bytes(8, "little")
    block[_BLOCKLIST + 8 : _BLOCKLIST + 10] = (sectors - 1).to_bytes(2, "little")
    with open(disk, "r+b") as f:
        mbr = bytearray(f.read(512))
        new = bytearray(boot)
        new[_BPB[0] : _BPB[1]] = mbr[_BPB[0] : _BPB[1]]
        new[_PART_TABLE[0] : _PART_TABLE[1]] = mbr[_PART_TABLE[0] : _PART_TABLE[1]]
        new[_KERNEL_SECTOR : _KERNEL_SECTOR + 8] = BIOS_BOOT_LBA.to_bytes(8, "little")
        new[_DRIVE_CHECK : _DRIVE_CHECK + 2] = b"\x90\x90"
        f.seek(0)
        f.write(new)
        f.seek(BIOS_BOOT_LBA * 512)
        f.write(bytes(block) + core[512:])
        f.flush()
        os.fsync(f.fileno())


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _configure(root: Path, uuid: str) -> None:
    """Files of the guest: fstab, hostname, GRUB's defaults, the console, the test repo."""
    _write(root / "etc/fstab", f"UUID={uuid} / btrfs subvol=@,noatime 0 0\n")
    _write(root / "etc/hostname", "ashboot\n")
    _write(root / "etc/hosts", "127.0.0.1 localhost ashboot\n")
    mtab = root / "etc/mtab"
    mtab.unlink(missing_ok=True)
    mtab.symlink_to("../proc/self/mounts")
    _write(root / "etc/default/grub", GRUB_DEFAULT)
    _write(root / "usr/local/sbin/ash-console", CONSOLE_SCRIPT, 0o755)
    _write(root / "etc/systemd/system/ash-console.service", CONSOLE_UNIT)
    _write(
        root / "etc/systemd/system.conf.d/ashboot.conf", "[Manager]\nDefaultTimeoutStopSec=15s\n"
    )
    wants = root / "etc/systemd/system/multi-user.target.wants/ash-console.service"
    wants.parent.mkdir(parents=True, exist_ok=True)
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/ash-console.service")
    # no getty on the serial line (the console shell owns it), nothing waits for a network
    # (grub2-common.service rewrites /boot/grub/grubenv at every boot: drift at every first
    # operation after a boot; getty-static and modprobe@drm cost 5-6 s each under TCG)
    masks = ("serial-getty@ttyS0.service", "getty@tty1.service", "grub-common.service",
             "grub2-common.service", "getty-static.service", "modprobe@drm.service",
             "systemd-networkd-wait-online.service")  # fmt: skip
    for unit in masks:
        masked = root / "etc/systemd/system" / unit
        masked.unlink(missing_ok=True)
        masked.symlink_to("/dev/null")
    # the test packages as a flat apt repo; apt sees nothing else (the guest is offline)
    build = root / "srv/ashtest/build"
    repo = root / "srv/ashtest/deb"
    repo.mkdir(parents=True, exist_ok=True)
    for r in TEST_DEBS:
        packages._deb(build, r)
        tree = build / "deb" / f"{r.name}_{r.version}"
        deb = repo / packages.deb_file(r)
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)])
    shutil.rmtree(build)
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        import hashlib

        control = run(["dpkg-deb", "-f", str(deb)]).stdout.rstrip("\n")
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    _write(repo / "Packages", "\n".join(stanzas))
    for old in (root / "etc/apt/sources.list.d").glob("*"):
        old.unlink()
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    _write(
        root / "etc/apt/sources.list.d/ashtest.list", "deb [trusted=yes] file:/srv/ashtest/deb ./\n"
    )


def _install(root: Path, device: str, uuid: str, say) -> None:  # type: ignore[no-untyped-def]
    """Chrooted: apt's lists, the project (pip), GRUB's files and grub.cfg, `ashctl setup`."""
    run_in(root, ["apt-get", "update", "-qq"])
    src = root / "usr/src/ashlayers"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in PROJECT_FILES:
        path = PROJECT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, src / name)
    say("pip install the project into the image")
    run_in(
        root,
        ["python3", "-m", "pip", "install", "--break-system-packages", "--no-deps",
         "--no-build-isolation", "--no-index", "--no-cache-dir", "/usr/src/ashlayers"],
    )  # fmt: skip
    for leftover in ("build", "ashlayers.egg-info"):
        shutil.rmtree(src / leftover, ignore_errors=True)
    # grub-install cannot map the partition's loop device to a BIOS disk: the modules and a
    # core.img made here (prefix: the second GPT partition's @/boot/grub), embedded by
    # _embed_grub; grub.cfg from the image's own grub-mkconfig, with the partition's loop
    # device mapped as (hd0) for its probes (its `search --fs-uuid` finds the right one).
    say("grub: modules, core.img, grub-mkconfig")
    grub = root / "boot/grub"
    shutil.copytree(root / "usr/lib/grub/i386-pc", grub / "i386-pc", dirs_exist_ok=True)
    run_in(
        root,
        ["grub-mkimage", "-O", "i386-pc", "-o", "/boot/grub/i386-pc/core.img",
         "-p", "(hd0,gpt2)/@/boot/grub", "biosdisk", "part_gpt", "btrfs"],
    )  # fmt: skip
    # Without udev here there is no /dev/disk/by-uuid, so 10_linux would name the device (a
    # loop device) on the kernel line: a wrapper, kept in the image (where it changes
    # nothing), puts back the root=UUID= it writes on a real system. `ashctl setup` runs
    # update-grub itself (for its /etc/grub.d part), so the wrapper must be there first.
    # grub-probe needs the loop device mapped as (hd0) (device.map), only while building: the
    # map is given in /run (not part of any layer) and the wrapper removes its copy.
    devicemap = root / "run/ash-image-devicemap"
    _write(devicemap, f"(hd0) {device}\n")
    backing = run(["losetup", "--noheadings", "--output", "BACK-FILE", device]).stdout.strip()
    fixes = " ".join(
        f"-e 's|root={name} |root=UUID={uuid} |g' -e 's|{name}|{uuid}|g'"
        for name in sorted({device, backing} - {""})
    )
    _write(
        root / "usr/local/sbin/update-grub",
        "#!/bin/sh\n# The boot tier's image build (tests/boot/image.py): root=UUID= without udev.\n"
        "[ ! -f /run/ash-image-devicemap ] || cp /run/ash-image-devicemap /boot/grub/device.map\n"
        '/usr/sbin/update-grub "$@"; rc=$?\nrm -f /boot/grub/device.map\n'
        f"[ $rc -ne 0 ] || sed -i {fixes} /boot/grub/grub.cfg\nexit $rc\n",
        0o755,
    )
    run_in(root, ["update-grub"])  # grub.cfg as Debian's installer leaves it: setup reads it
    # What a first boot would write, written now, so the base layer has it (no drift at the
    # first operation): the machine id, systemd-update-done's stamps, GRUB's environment.
    run_in(root, ["systemd-machine-id-setup"])
    run_in(root, ["/usr/lib/systemd/systemd-update-done"])
    run_in(root, ["grub-editenv", "/boot/grub/grubenv", "create"])
    say("ashctl setup in the image (update-grub, update-initramfs)")
    try:
        run_in(root, ["ashctl", "setup"])
    finally:
        devicemap.unlink()
    cfg = (root / "boot/grub/grub.cfg").read_text()
    if "rootflags=subvol=@ " not in cfg or f"root=UUID={uuid} " not in cfg or device in cfg:
        raise RigError("grub.cfg does not boot root=UUID=... subvol=@:\n" + cfg[-2000:])
    if "09_ashlayers" not in cfg:
        raise RigError("grub.cfg has no ashlayers part: setup did not run update-grub")


def clean() -> None:
    folder = boot_dir()
    enter_private_namespace()
    fd = lock_file(folder / "lock", 60, f"the boot image dir {folder}")
    try:
        unmount_below(folder)
        for path in [*folder.glob("*.img"), *folder.glob("*.tar.zst"), *folder.glob(".*")]:
            path.unlink()
        for path in folder.glob("run-*"):
            shutil.rmtree(path)
    finally:
        unlock_file(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.boot.image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("build", "clean"))
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            started = time.monotonic()
            built = build()
            figures = ", ".join(f"{k} {v:.1f} s" for k, v in built.timings.items())
            say_stderr(
                f"image {built.path} ready in {time.monotonic() - started:.1f} s"
                f" ({figures or 'cached'})"
            )
        else:
            clean()
    except RigError as exc:
        say_stderr(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
