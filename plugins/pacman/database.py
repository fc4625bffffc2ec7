"""The database face: the installed packages of any root, read with pyalpm.

pyalpm is imported when a database is first read, never at import time (the hook's hot path
imports this module). A `Handle` on the root's local database reads `local/*/desc`; it takes
no lock, so it works while pacman holds db.lck around its hooks.
"""

from __future__ import annotations

import os
from typing import Any

from ashplugins.pacman import conf


def _pyalpm() -> Any:
    import pyalpm

    return pyalpm


class PacmanDatabase:
    """`read_installed` and `compare_versions` for the core, by pacman's own rules."""

    def read_installed(self, root: str) -> dict[str, str]:
        dbpath = conf.in_root(root, conf.read(root).dbpath)
        if not os.path.isdir(os.path.join(dbpath, "local")):
            return {}  # pacman never ran on this root: nothing installed
        handle = _pyalpm().Handle(root, dbpath)
        return {pkg.name: pkg.version for pkg in handle.get_localdb().pkgcache}

    def compare_versions(self, a: str, b: str) -> int:
        result: int = _pyalpm().vercmp(a, b)
        return (result > 0) - (result < 0)
