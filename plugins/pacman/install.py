"""The installer face, called by `ashctl setup`: put the alpm hooks into a root.

The hooks go into the first HookDir of the root's pacman.conf (default /etc/pacman.d/hooks/),
with /etc/ash/hooks.d/pacman.toml (all settings commented out) when the root has none.
"""

from __future__ import annotations

import os
from importlib import resources

from ashplugins.pacman import conf

from ashcore.config import HOOKS_DIR
from ashcore.launcher import fill
from ashcore.ondisk import write_atomic

HOOK_FILES = ("00-ashlayers-pre.hook", "zz-ashlayers-post.hook")
LAUNCHER = "/usr/libexec/ashlayers/pacman-hook"
CONFIG_FILE = "pacman.toml"
PACMAN_BINARIES = ("usr/bin/pacman", "bin/pacman")
PACKAGED_HOOKS = "usr/share/libalpm/hooks"


def detect(root: str) -> bool:
    """pacman is installed in `root`."""
    return any(os.path.isfile(os.path.join(root, p)) for p in PACMAN_BINARIES)


def _shipped(name: str) -> bytes:
    return resources.files("ashplugins.pacman").joinpath("files", name).read_bytes()


def _hook_paths(root: str) -> list[str]:
    hookdir = conf.read(root).hookdirs[0]
    return [os.path.join(hookdir, name) for name in HOOK_FILES]


def packaged(root: str) -> bool:
    """A native package put the hooks in alpm's own folder: a copy in the admin's HookDir
    would override them and outlive the package's removal (its pre hook stops pacman once
    the launcher is gone and /etc/ash/ash.toml is still there)."""
    return all(os.path.isfile(os.path.join(root, PACKAGED_HOOKS, n)) for n in HOOK_FILES)


def _write(root: str, path: str, data: bytes, *, replace: bool, mode: int = 0o644) -> bool:
    """Write `data` at `path` (inside root) unless it is there already; True if written."""
    host = conf.in_root(root, path)
    try:
        with open(host, "rb") as f:
            same = f.read() == data and (os.fstat(f.fileno()).st_mode & 0o7777) == mode
        if same or not replace:
            return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(host), mode=0o755, exist_ok=True)
    write_atomic(host, data)
    os.chmod(host, mode)  # a group-writable config file would be refused
    return True


def install(root: str) -> list[str]:
    """Write the hooks (and a commented pacman.toml); return the paths written. Idempotent."""
    launcher = _write(root, LAUNCHER, fill(_shipped("pacman-hook"), root), replace=True, mode=0o755)
    written = [LAUNCHER] if launcher else []
    written += [
        p
        for p in ([] if packaged(root) else _hook_paths(root))
        if _write(root, p, fill(_shipped(os.path.basename(p)), root), replace=True)
    ]
    config = os.path.join("/", HOOKS_DIR, CONFIG_FILE)
    if _write(root, config, _shipped(CONFIG_FILE), replace=False):
        written.append(config)
    return written


def uninstall(root: str) -> list[str]:
    """Remove the hooks (the user's pacman.toml stays); return the paths removed."""
    removed = []
    for path in [*_hook_paths(root), LAUNCHER]:
        try:
            os.unlink(conf.in_root(root, path))
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
