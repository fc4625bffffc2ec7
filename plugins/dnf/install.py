"""The installer face: `ashctl setup` writes the hook files into a root that has dnf5 or dnf.

- dnf5 (libdnf5): /etc/dnf/libdnf5-plugins/actions.d/ashlayers.actions, read by libdnf5's
  built-in actions plugin (Fedora ships that plugin as libdnf5-plugin-actions), which runs
  /usr/libexec/ashlayers/dnf5-hook.
- dnf4: ashlayers.py in dnf's plugin path (`dnf-plugins` beside the `dnf` package) and
  /etc/dnf/plugins/ashlayers.conf.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import py_compile
import sys
from importlib import resources

from ashcore.launcher import fill
from ashcore.ondisk import write_atomic

log = logging.getLogger(__name__)

ACTIONS = "etc/dnf/libdnf5-plugins/actions.d/ashlayers.actions"
LAUNCHER = "usr/libexec/ashlayers/dnf5-hook"
ACTIONS_PLUGIN_CONF = "etc/dnf/libdnf5-plugins/actions.conf"
DNF4_CONF = "etc/dnf/plugins/ashlayers.conf"
HOOK_CONFIG = "etc/ash/hooks.d/dnf.toml"
DNF4_PLUGIN = "ashlayers.py"
DNF5_BINARIES = ("usr/bin/dnf5", "usr/bin/microdnf")
DNF_PACKAGES = (
    "usr/lib/python3/dist-packages/dnf",
    "usr/lib/python3*/site-packages/dnf",
    "usr/lib64/python3*/site-packages/dnf",
)


def _found(root: str, patterns: tuple[str, ...]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        paths += sorted(glob.glob(os.path.join(root, pattern)))
    return paths


def has_dnf5(root: str) -> bool:
    return bool(_found(root, (*DNF5_BINARIES, ACTIONS_PLUGIN_CONF)))


def dnf4_plugin_dirs(root: str) -> list[str]:
    """dnf's plugin path in the root (relative): `dnf-plugins` beside each `dnf` package."""
    return [
        os.path.relpath(os.path.join(os.path.dirname(package), "dnf-plugins"), root)
        for package in _found(root, DNF_PACKAGES)
        if os.path.isfile(os.path.join(package, "__init__.py"))
    ]


def detect(root: str) -> bool:
    return has_dnf5(root) or bool(dnf4_plugin_dirs(root))


def _file(name: str) -> bytes:
    return resources.files("ashplugins.dnf").joinpath("files", name).read_bytes()


def _ensure(root: str, relative: str, data: bytes, mode: int) -> str:
    path = os.path.join(root, relative)
    try:
        with open(path, "rb") as f:
            same = f.read() == data
    except FileNotFoundError:
        same = False
    if not same:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_atomic(path, data)
    if os.stat(path).st_mode & 0o7777 != mode:
        os.chmod(path, mode)
    return "/" + relative


def _wanted(root: str) -> list[tuple[str, str]]:
    """(path relative to the root, file name in files/) of every hook file for this root."""
    wanted: list[tuple[str, str]] = []
    if has_dnf5(root):
        wanted.append((LAUNCHER, "dnf5-hook"))
        wanted.append((ACTIONS, "ashlayers.actions"))
    plugin_dirs = dnf4_plugin_dirs(root)
    for plugin_dir in plugin_dirs:
        wanted.append((os.path.join(plugin_dir, DNF4_PLUGIN), "ashlayers.py"))
    if plugin_dirs:
        wanted.append((DNF4_CONF, "ashlayers.conf"))
    return wanted


def _precompile(root: str, relative: str) -> None:
    """Compile dnf4's plugin file now when the root runs this Python version: else dnf writes
    its __pycache__ on the first run, a change that would show as drift."""
    version = f"usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if relative.endswith(".py") and os.path.exists(os.path.join(root, version)):
        path = os.path.join(root, relative)
        py_compile.compile(path, cfile=importlib.util.cache_from_source(path), doraise=False)


def install(root: str) -> list[str]:
    """Write the hook files for the dnf5 and dnf4 found in root; idempotent."""
    written = []
    for relative, name in _wanted(root):
        mode = 0o755 if relative == LAUNCHER else 0o644
        written.append(_ensure(root, relative, fill(_file(name), root), mode))
        _precompile(root, relative)
    if written:  # the user's settings: written once, never replaced, kept by uninstall
        if not os.path.exists(os.path.join(root, HOOK_CONFIG)):
            _ensure(root, HOOK_CONFIG, _file("dnf.toml"), 0o644)
        written.append("/" + HOOK_CONFIG)
    if has_dnf5(root) and not os.path.exists(os.path.join(root, ACTIONS_PLUGIN_CONF)):
        log.warning(
            "ashlayers: libdnf5's actions plugin is not installed in %s (libdnf5-plugin-actions):"
            " dnf5 runs leave no layers until it is",
            root,
        )
    return written


def uninstall(root: str) -> list[str]:
    removed: list[str] = []
    candidates = [ACTIONS, LAUNCHER, DNF4_CONF] + [
        os.path.join(d, DNF4_PLUGIN) for d in dnf4_plugin_dirs(root)
    ]
    for relative in candidates:
        path = os.path.join(root, relative)
        if os.path.lexists(path):
            os.unlink(path)
            removed.append("/" + relative)
            cached = importlib.util.cache_from_source(path)
            if relative.endswith(".py") and os.path.lexists(cached):
                os.unlink(cached)
    return removed
