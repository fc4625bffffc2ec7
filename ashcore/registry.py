"""The plugins the core knows by name, and their database faces, loaded only when needed.

The core never imports a manager's bindings; it imports a plugin's database face (which
imports them at first use) only to describe a layer another plugin left: a run that died,
closed by the next operation of another manager or by `ashctl doctor`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.model import PackageDatabase

DATABASES = {
    "apt": ("ashplugins.apt.database", "AptDatabase"),
    "dnf": ("ashplugins.dnf.rpmdb", "RpmDatabase"),
    "pacman": ("ashplugins.pacman.database", "PacmanDatabase"),
}


def database_of(plugin: str | None) -> PackageDatabase | None:
    """The database face of `plugin`, or None when there is none or it cannot load (the
    plugin's binding is missing: the layer is then kept without its package delta)."""
    if plugin not in DATABASES:
        return None
    module_name, class_name = DATABASES[plugin]
    import importlib

    try:
        face: PackageDatabase = getattr(importlib.import_module(module_name), class_name)()
    except Exception:  # ImportError, or a binding that fails as it loads
        return None
    return face
