"""What a package operation costs the filesystem: its used bytes, measured soundly.

btrfs frees lazily: a deleted subvolume (a swept probe) is cleaned by a kernel thread later,
and extents freed in a transaction count as used until it commits. `used(top)` first writes
back every dirty page (`sync`), waits for deleted subvolumes to be cleaned (`btrfs subvolume
sync`), then commits twice (`btrfs filesystem sync`: the second commit frees what the first
one pinned), and reads the space info of the whole filesystem (`btrfs filesystem df -b`).
statvfs is no use here: on btrfs it moves by whole metadata chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.command import run

MiB = 1 << 20


@dataclass(frozen=True)
class Usage:
    data: int  # bytes of file data (logical; single profile)
    metadata: int  # bytes of metadata, one copy (small files live here, inline)
    metadata_copies: int  # 2 for DUP
    system: int

    @property
    def logical(self) -> int:
        return self.data + self.metadata + self.system

    @property
    def raw(self) -> int:
        """Bytes the device loses: metadata counted once per copy."""
        return self.data + (self.metadata + self.system) * self.metadata_copies

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.data - other.data,
            self.metadata - other.metadata,
            self.metadata_copies,
            self.system - other.system,
        )


def used(top: Path) -> Usage:
    """The used bytes of the btrfs filesystem mounted at `top`, everything freed first."""
    os.sync()
    run(["btrfs", "subvolume", "sync", str(top)])
    for _ in range(2):
        run(["btrfs", "filesystem", "sync", str(top)])
    data = metadata = system = 0
    copies = 1
    for line in run(["btrfs", "filesystem", "df", "-b", str(top)]).stdout.splitlines():
        kind, _, rest = line.partition(":")
        fields = dict(f.strip().split("=") for f in rest.split(",") if "=" in f)
        if "used" not in fields:
            continue
        value = int(fields["used"])
        name, _, profile = kind.partition(",")
        if name.strip() == "Data":
            data += value
        elif name.strip() == "Metadata":
            metadata += value
            copies = 2 if profile.strip() in ("DUP", "RAID1") else 1
        elif name.strip() == "System":
            system += value
    return Usage(data, metadata, copies, system)


def own_bytes(root: object, package: str) -> int:
    """The bytes the files of an installed package take (regular files, as allocated; a
    few bytes of data are stored inline in btrfs's metadata and show as 0)."""
    path: Path = root.path  # type: ignore[attr-defined]
    listed = root.run(["dpkg", "-L", package]).stdout.splitlines()  # type: ignore[attr-defined]
    total = 0
    for name in listed:
        file = path / name.lstrip("/")
        if file.is_file() and not file.is_symlink():
            total += max(file.stat().st_blocks * 512, file.stat().st_size)
    return total
