"""The few paths of a root's pacman.conf the plugin needs: DBPath and HookDir.

pacman.conf is INI-like: `[options]` holds `Key = Value` settings; repository sections and
their `Include` lines do not matter here. Paths are inside the root, as pacman reads them when
it runs on that root.
"""

from __future__ import annotations

import os

from ashcore.value import Value

CONF = "etc/pacman.conf"
DEFAULT_DBPATH = "/var/lib/pacman/"
DEFAULT_HOOKDIR = "/etc/pacman.d/hooks/"


class PacmanPaths(Value):
    __slots__ = ("dbpath", "hookdirs")
    dbpath: str
    hookdirs: tuple[str, ...]

    def __init__(
        self, dbpath: str = DEFAULT_DBPATH, hookdirs: tuple[str, ...] = (DEFAULT_HOOKDIR,)
    ) -> None:
        self._init(dbpath=dbpath, hookdirs=hookdirs)


def parse(text: str) -> PacmanPaths:
    """DBPath (the last one wins, as in pacman) and HookDir (repeatable) of `[options]`."""
    section = ""
    dbpath = DEFAULT_DBPATH
    hookdirs: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if section != "options" or not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "DBPath" and value:
            dbpath = value
        elif key == "HookDir":
            hookdirs.extend(value.split())
    return PacmanPaths(dbpath, tuple(hookdirs) or (DEFAULT_HOOKDIR,))


def read(root: str) -> PacmanPaths:
    """The paths named by `root`'s pacman.conf, or pacman's defaults if it has none."""
    try:
        with open(os.path.join(root, CONF), encoding="utf-8", errors="replace") as f:
            return parse(f.read())
    except FileNotFoundError:
        return PacmanPaths()


def in_root(root: str, path: str) -> str:
    """`path` (absolute, as pacman names it inside the root) as seen from here."""
    return os.path.join(root, path.lstrip("/"))
