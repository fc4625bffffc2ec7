"""Mounts: what /proc/self/mountinfo says, and mounting subvolumes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ashcore.errors import BackendError


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


def filesystem_uuid(device: str) -> str | None:
    """The UUID of the filesystem on `device` (what fstab's and the kernel line's UUID= name)."""
    from ashcore.run import run

    result = run(["blkid", "-p", "-s", "UUID", "-o", "value", device], check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def mount_at(path: str) -> Mount | None:
    """The mount whose mount point is `path` (the last one wins, as the kernel shows)."""
    real = os.path.realpath(path)
    found = [m for m in mounts() if m.target == real]
    return found[-1] if found else None


def submounts(path: str) -> list[Mount]:
    """Mounts strictly below `path`, outermost first (mountinfo order)."""
    real = os.path.realpath(path).rstrip("/") + "/"
    return [m for m in mounts() if m.target.startswith(real)]


# mount(2) and umount2(2) straight, not through mount(8): a process start costs 4-20 ms on
# these machines, and a rollback or a replay mounts and moves a dozen things.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_MOVE, MS_REC, MS_SLAVE = 4096, 8192, 16384, 1 << 19
MNT_DETACH = 2
_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = lib
    return _libc


def _enc(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    import ctypes

    if _lib().mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)) != 0:
        err = ctypes.get_errno()
        what = fstype or ("a move" if flags & MS_MOVE else "a bind" if flags & MS_BIND else "")
        raise BackendError(
            f"cannot mount {source or what} at {target}"
            + (f" ({data})" if data else "")
            + f": {os.strerror(err)}",
            hint="see `findmnt` and the kernel log (dmesg)",
        )


def mount_subvolume(device: str, subvol: str, target: str) -> None:
    _mount(device, target, "btrfs", 0, f"subvol={subvol}")


def mount_toplevel(device: str, target: str) -> None:
    _mount(device, target, "btrfs", 0, "subvolid=5")


def unmount(target: str, *, lazy: bool = False) -> None:
    import ctypes

    if _lib().umount2(_enc(target), MNT_DETACH if lazy else 0) != 0:
        err = ctypes.get_errno()
        raise BackendError(f"cannot unmount {target}: {os.strerror(err)}", hint="see `findmnt`")


def move_mount(source: str, target: str) -> None:
    _mount(source, target, None, MS_MOVE, None)


API = (
    ("proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
    ("sysfs", "sys", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, None),
    ("tmpfs", "tmp", MS_NOSUID | MS_NODEV, "mode=1777"),
    ("tmpfs", "run", MS_NOSUID | MS_NODEV, "mode=755"),
)


def api_points(root: str) -> list[str]:
    """The mount points `mount_api` fills in `root`."""
    return [os.path.join(root, rel) for _, rel, _, _ in API] + [os.path.join(root, "dev")]


def mount_api(root: str) -> list[str]:
    """What a package manager needs in a root it runs chrooted in: proc, sys, a /tmp and
    /run of its own, and the host's /dev (a recursive bind, slave: nothing propagates back).
    Mounts only what is not mounted there yet; returns the mount points made."""
    made = []
    for fstype, rel, flags, data in API:
        path = os.path.join(root, rel)
        if mount_at(path) is None:
            os.makedirs(path, exist_ok=True)
            _mount(fstype, path, fstype, flags, data)
            made.append(path)
    dev = os.path.join(root, "dev")
    if mount_at(dev) is None:
        os.makedirs(dev, exist_ok=True)
        _mount("/dev", dev, None, MS_BIND | MS_REC, None)
        _mount(None, dev, None, MS_SLAVE | MS_REC, None)
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
        except BackendError:
            unmount(target, lazy=True)
