"""Debian sid's full package list (main, this machine's arch) in a root of the rig.

The rig's base is made by mmdebstrap, which leaves /var/lib/apt/lists empty, and its golden
knows only the local test repo: apt's pkgcache.bin is then a few MB. A real system's is
55-78 MB. `add_full_list(root)` puts sid's Packages.xz into the root as a flat `file:` repo
(`/srv/sid`) and runs `apt-get update`, which fills /var/lib/apt/lists and rebuilds the
caches offline. The file is fetched once from the rig's mirror (tests/e2e/base.py `mirror()`)
into the shared cache dir (ASH_RIG_CACHE) and reused from there.
"""

from __future__ import annotations

import os
import platform
import shutil
import urllib.request
from pathlib import Path

from tests.e2e.base import mirror
from tests.e2e.command import RigError, run
from tests.e2e.image import RigPaths, lock_file, unlock_file
from tests.e2e.root import Root

DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf"}
# No Release file: with one (apt-ftparchive's), apt 3.3 skips a flat repo that ships only
# Packages.xz ("does not seem to provide it"); without, it takes Packages.xz and decompresses
# it into /var/lib/apt/lists, as from a mirror (an uncompressed file: index is only linked).
SOURCE = "deb [trusted=yes lang=none] file:/srv/sid ./\n"
MIN_SIZE = 5_000_000  # bytes: sid main's Packages.xz is ~10 MB; less is a truncated fetch


def arch() -> str:
    return DEB_ARCH.get(platform.machine(), platform.machine())


def cached_path(paths: RigPaths | None = None) -> Path:
    paths = paths or RigPaths.from_env()
    return paths.cache / f"sid-main-{arch()}-Packages.xz"


def packages_xz(paths: RigPaths | None = None, *, fetch: bool = True) -> Path:
    """The cached Packages.xz, fetched first if missing (RigError, saying why, if it cannot be)."""
    path = cached_path(paths)
    if path.exists():
        return path
    if not fetch:
        raise RigError(f"{path} is not cached")
    url = f"{mirror().rstrip('/')}/dists/sid/main/binary-{arch()}/Packages.xz"
    fd = lock_file(path.with_suffix(".lock"), 600, f"the fetch of {url}")
    try:
        if path.exists():  # another run fetched it while this one waited
            return path
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            with urllib.request.urlopen(url, timeout=60) as answer, open(partial, "wb") as out:
                shutil.copyfileobj(answer, out)
                out.flush()
                os.fsync(out.fileno())
            size = partial.stat().st_size
            if size < MIN_SIZE:
                raise RigError(f"{url}: only {size} bytes (expected about 10 MB)")
            partial.rename(path)
        except OSError as exc:
            raise RigError(
                f"sid's full package list is not cached ({path}) and cannot be fetched"
                f" from {url}: {exc}"
            ) from exc
        finally:
            partial.unlink(missing_ok=True)
    finally:
        unlock_file(fd)
    return path


def change_list(root: Root, xz: Path, day: int) -> None:
    """Put a changed list into the root's /srv/sid (one Description edited), as a mirror's
    next day: the next `apt-get update` writes the whole list file in /var/lib/apt/lists anew."""
    edit = f"0,/^Description: /s//Description: (day {day}) /"
    run(
        [
            "sh",
            "-c",
            'xz -dc "$1" | sed "$2" | xz -0 -T2 > "$3"',
            "sh",
            str(xz),
            edit,
            str(root.path / "srv/sid/Packages.xz"),
        ]
    )


def add_full_list(root: Root, xz: Path) -> int:
    """Make sid's full list an apt source of `root` and `apt-get update`; returns the size of
    apt's pkgcache.bin then (bytes). RigError unless the list is in /var/lib/apt/lists."""
    repo = root.path / "srv/sid"
    repo.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(xz, repo / "Packages.xz")
    (root.path / "etc/apt/sources.list.d/sid-full.list").write_text(SOURCE)
    root.run(["apt-get", "update", "-q"])
    lists = root.path / "var/lib/apt/lists/_srv_sid_._Packages"
    if not lists.is_file() or lists.is_symlink() or lists.stat().st_size < 10 * MIN_SIZE:
        raise RigError(f"apt-get update did not put sid's full list into {lists}")
    cache = root.path / "var/cache/apt/pkgcache.bin"
    return cache.stat().st_size if cache.exists() else 0
