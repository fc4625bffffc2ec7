"""The database face: the installed packages of any root, as libalpm itself lists them.

libalpm builds its local package cache from the names of the local database's directories:
`<dbpath>/local/<name>-<pkgver>-<pkgrel>/` (be_local.c `local_db_populate` splits each entry
with `_alpm_splitname`; `desc` is read lazily). `read_installed` reads that same index
directly, which costs ~0.05 ms, where importing pyalpm and opening a Handle costs ~6 ms on
every hook run (measured in the rig; see bench/bench_pacman.py). `read_installed_pyalpm` is the
binding's view through a `Handle`; the e2e tier checks after every operation that the two
agree. Versions are compared by the binding (`pyalpm.vercmp`), imported only when the core
needs an order (a version changed).
"""

from __future__ import annotations

import os

from ashplugins.pacman import conf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _pyalpm() -> Any:
    import pyalpm

    return pyalpm


def _dbpath(root: str) -> str:
    path: str = conf.in_root(root, conf.read(root).dbpath)
    return path


def split_entry(entry: str) -> tuple[str, str] | None:
    """(name, "pkgver-pkgrel") of a local database entry, or None if it is not one."""
    rest, _, pkgrel = entry.rpartition("-")
    name, _, pkgver = rest.rpartition("-")
    if not (name and pkgver and pkgrel):
        return None
    return name, f"{pkgver}-{pkgrel}"


def read_local(local: str) -> dict[str, str]:
    """name -> version from the entries of a local database directory (alpm's own index)."""
    installed: dict[str, str] = {}
    try:
        entries = list(os.scandir(local))
    except FileNotFoundError:
        return installed  # pacman never ran on this root: nothing installed
    for entry in sorted(entries, key=lambda e: e.name):
        split = split_entry(entry.name) if entry.is_dir() else None
        if split is not None and split[0] not in installed:  # alpm skips a duplicate too
            installed[split[0]] = split[1]
    return installed


def read_installed_pyalpm(root: str) -> dict[str, str]:
    """The same set through pyalpm: a Handle on the root's local database (no lock taken)."""
    dbpath = _dbpath(root)
    if not os.path.isdir(os.path.join(dbpath, "local")):
        return {}
    handle = _pyalpm().Handle(root, dbpath)
    return {pkg.name: pkg.version for pkg in handle.get_localdb().pkgcache}


class PacmanDatabase:
    """`read_installed` and `compare_versions` for the core, by pacman's own rules."""

    def state_paths(self, root: str) -> tuple[str, ...]:
        """What `read_installed` reads: the names in the local database's folder."""
        return (os.path.relpath(os.path.join(_dbpath(root), "local"), root),)

    def read_installed(self, root: str) -> dict[str, str]:
        return read_local(os.path.join(_dbpath(root), "local"))

    def compare_versions(self, a: str, b: str) -> int:
        result: int = _pyalpm().vercmp(a, b)
        return (result > 0) - (result < 0)
