"""The installer face: write apt's and dpkg's hook files into a root (`ashctl setup`)."""

from __future__ import annotations

import os
from importlib import resources

from ashcore.launcher import fill
from ashcore.ondisk import write_atomic

HOOK_SCRIPT = "usr/libexec/ashlayers/apt-hook"
APT_SNIPPET = "etc/apt/apt.conf.d/80ashlayers"
DPKG_SNIPPET = "etc/dpkg/dpkg.cfg.d/ashlayers"
HOOK_CONFIG = "etc/ash/hooks.d/apt.toml"

# (file shipped in files/, where it goes, mode, overwrite an existing one)
FILES = (
    ("apt-hook", HOOK_SCRIPT, 0o755, True),
    ("80ashlayers", APT_SNIPPET, 0o644, True),
    ("dpkg.cfg", DPKG_SNIPPET, 0o644, True),
    ("apt.toml", HOOK_CONFIG, 0o644, False),  # the user's settings are kept
)


def _shipped(name: str) -> bytes:
    return resources.files("ashplugins.apt").joinpath("files", name).read_bytes()


def _filled(name: str, root: str) -> bytes:
    return fill(_shipped(name), root)


def detect(root: str) -> bool:
    """dpkg is in the root (apt's snippet is written when apt is there too)."""
    return os.path.isfile(os.path.join(root, "usr/bin/dpkg")) and os.path.isdir(
        os.path.join(root, "var/lib/dpkg")
    )


def _wanted(root: str, dest: str) -> bool:
    return dest != APT_SNIPPET or os.path.isdir(os.path.join(root, "etc/apt/apt.conf.d"))


def install(root: str) -> list[str]:
    """Write the hook files; returns the paths (inside the root) written. Idempotent."""
    written = []
    for name, dest, mode, overwrite in FILES:
        if not _wanted(root, dest):
            continue
        path = os.path.join(root, dest)
        data = _filled(name, root)
        try:
            with open(path, "rb") as f:
                current: bytes | None = f.read()
        except FileNotFoundError:
            current = None
        if current is not None and (current == data or not overwrite):
            if os.stat(path).st_mode & 0o7777 != mode and current == data:
                os.chmod(path, mode)
            continue
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_atomic(path, data)
        os.chmod(path, mode)
        written.append("/" + dest)
    return written


def uninstall(root: str) -> list[str]:
    """Remove the hook files (the user's apt.toml stays); returns the paths removed."""
    removed = []
    for _, dest, _, overwrite in FILES:
        path = os.path.join(root, dest)
        if overwrite and os.path.lexists(path):
            os.unlink(path)
            removed.append("/" + dest)
    directory = os.path.join(root, os.path.dirname(HOOK_SCRIPT))
    if os.path.isdir(directory) and not os.listdir(directory):
        os.rmdir(directory)
    return removed
