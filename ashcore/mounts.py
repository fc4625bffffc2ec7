"""Mounts: what /proc/self/mountinfo says, and mounting subvolumes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ashcore.run import run


@dataclass(frozen=True)
class Mount:
    target: str  # where it is mounted
    fs_root: str  # the path inside the filesystem (for btrfs: the subvolume's path)
    fstype: str
    source: str  # the device
    options: str


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape") if "\\" in text else text


def mounts() -> list[Mount]:
    result = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            result.append(
                Mount(
                    target=_unescape(fields[4]),
                    fs_root=_unescape(fields[3]),
                    fstype=tail[0],
                    source=_unescape(tail[1]),
                    options=tail[2] if len(tail) > 2 else "",
                )
            )
    return result


def mount_at(path: str) -> Mount | None:
    """The mount whose mount point is `path` (the last one wins, as the kernel shows)."""
    real = os.path.realpath(path)
    found = [m for m in mounts() if m.target == real]
    return found[-1] if found else None


def submounts(path: str) -> list[Mount]:
    """Mounts strictly below `path`, outermost first (mountinfo order)."""
    real = os.path.realpath(path).rstrip("/") + "/"
    return [m for m in mounts() if m.target.startswith(real)]


def mount_subvolume(device: str, subvol: str, target: str) -> None:
    run(["mount", "-t", "btrfs", "-o", f"subvol={subvol}", device, target])


def mount_toplevel(device: str, target: str) -> None:
    run(["mount", "-t", "btrfs", "-o", "subvolid=5", device, target])


def unmount(target: str, *, lazy: bool = False) -> None:
    run(["umount", *(["-l"] if lazy else []), target])


def move_mount(source: str, target: str) -> None:
    run(["mount", "--move", source, target])


API = (
    ("proc", "proc", "nosuid,nodev,noexec"),
    ("sysfs", "sys", "nosuid,nodev,noexec,ro"),
    ("tmpfs", "tmp", "mode=1777,nosuid,nodev"),
    ("tmpfs", "run", "mode=755,nosuid,nodev"),
)


def mount_api(root: str) -> list[str]:
    """What a package manager needs in a root it runs chrooted in: proc, sys, a /tmp and
    /run of its own, and the host's /dev (a recursive bind, slave: nothing propagates back).
    Mounts only what is not mounted there yet; returns the mount points made."""
    made = []
    for fstype, rel, options in API:
        path = os.path.join(root, rel)
        if mount_at(path) is None:
            os.makedirs(path, exist_ok=True)
            run(["mount", "-t", fstype, "-o", options, fstype, path])
            made.append(path)
    dev = os.path.join(root, "dev")
    if mount_at(dev) is None:
        os.makedirs(dev, exist_ok=True)
        run(["mount", "--rbind", "/dev", dev])
        run(["mount", "--make-rslave", dev])
        made.append(dev)
    return made


def unmount_all(targets: list[str]) -> None:
    """Unmount each of `targets` with everything below it, innermost first (lazily when busy)."""
    below = [m.target for t in targets for m in submounts(t)]
    for target in sorted({*below, *targets}, key=len, reverse=True):
        if mount_at(target) is None:
            continue
        try:
            unmount(target)
        except Exception:
            unmount(target, lazy=True)
