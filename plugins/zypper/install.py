"""The installer face: `ashctl setup` writes the commit plugin into a root that has zypper."""

from __future__ import annotations

import os
from importlib import resources

from ashcore.launcher import fill
from ashcore.ondisk import write_atomic

PLUGIN_FILE = "usr/lib/zypp/plugins/commit/ashlayers"  # libzypp's pluginsPath()/commit
HOOK_CONFIG = "etc/ash/hooks.d/zypper.toml"

# (file shipped in files/, where it goes, mode, overwrite an existing one)
FILES = (
    ("ashlayers", PLUGIN_FILE, 0o755, True),
    ("zypper.toml", HOOK_CONFIG, 0o644, False),  # the user's settings are kept
)


def _shipped(name: str) -> bytes:
    return resources.files("ashplugins.zypper").joinpath("files", name).read_bytes()


def detect(root: str) -> bool:
    """zypper is installed in `root`."""
    return os.path.isfile(os.path.join(root, "usr/bin/zypper"))


def install(root: str) -> list[str]:
    """Write the plugin; returns the paths (inside the root) written. Idempotent."""
    written = []
    for name, dest, mode, overwrite in FILES:
        path = os.path.join(root, dest)
        data = fill(_shipped(name), root) if mode & 0o100 else _shipped(name)
        try:
            with open(path, "rb") as f:
                current: bytes | None = f.read()
        except FileNotFoundError:
            current = None
        if current is not None and (not overwrite or current == data):
            if current == data and os.stat(path).st_mode & 0o7777 != mode:
                os.chmod(path, mode)
            continue
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_atomic(path, data)
        os.chmod(path, mode)
        written.append("/" + dest)
    return written


def uninstall(root: str) -> list[str]:
    """Remove the plugin (the user's zypper.toml stays); returns the paths removed."""
    removed = []
    for _, dest, _, overwrite in FILES:
        path = os.path.join(root, dest)
        if overwrite and os.path.lexists(path):
            os.unlink(path)
            removed.append("/" + dest)
    return removed
