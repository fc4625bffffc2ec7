"""The registered package managers (ashplugins.MANAGERS), each a declared `Manager`.

The core asks this registry and names no manager. Loading the declarations imports no
binding (ashcore/manager.py); a manager's database face imports its bindings at first use.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.manager import Manager
    from ashcore.model import PackageDatabase

_loaded: tuple[Manager, ...] | None = None


def managers() -> tuple[Manager, ...]:
    """Every registered manager whose declaration loads (a plugin folder may be absent)."""
    global _loaded
    if _loaded is None:
        import importlib

        found = []
        try:
            from ashplugins import MANAGERS
        except ImportError:
            MANAGERS = ()
        for module, name in MANAGERS:
            try:
                found.append(getattr(importlib.import_module(module), name)())
            except (ImportError, AttributeError):
                continue
        _loaded = tuple(found)
    return _loaded


def manager_named(name: str | None) -> Manager | None:
    return next((m for m in managers() if m.name == name), None)


def records_manager(name: str | None) -> bool:
    """Whether `name` is what some manager's hooks record as a layer's manager."""
    return any(name == m.name or name in m.recorded_as for m in managers())


def database_of(plugin: str | None) -> PackageDatabase | None:
    """The database face of `plugin`, or None when there is none or it cannot load (the
    plugin's binding is missing: the layer is then kept without its package delta)."""
    manager = manager_named(plugin)
    if manager is None:
        return None
    try:
        return manager.database()
    except Exception:  # ImportError, or a binding that fails as it loads
        return None


_state: tuple[str, ...] | None = None


def state_paths() -> tuple[str, ...]:
    """Every manager's own databases (Manager.state)."""
    global _state
    if _state is None:
        _state = tuple(p for m in managers() for p in m.state)
    return _state


def in_state(path: str) -> bool:
    """Whether `path` (relative to a root) is in a manager's own database."""
    return any(path == p or path.startswith(p + "/") for p in state_paths())


_at_start: tuple[str, ...] | None = None


def made_at_start(path: str) -> bool:
    """Whether `path` is a file a manager's front end creates as it starts
    (Manager.made_at_start)."""
    global _at_start
    if _at_start is None:
        _at_start = tuple(p for m in managers() for p in m.made_at_start)
    return path in _at_start


def noise_paths() -> tuple[str, ...]:
    """What every manager writes that is no change of state (Manager.noise)."""
    return tuple(p for m in managers() for p in m.noise)


def lock_paths() -> tuple[str, ...]:
    """Every manager's lock files held while its hooks run (Manager.lock_files)."""
    return tuple(p for m in managers() for p in m.lock_files)


def kept_out() -> tuple[dict[str, str], dict[str, str]]:
    """(caches, indexes) of every manager: folder -> the program that makes it."""
    caches: dict[str, str] = {}
    indexes: dict[str, str] = {}
    for manager in managers():
        caches |= dict(manager.caches)
        indexes |= dict(manager.indexes)
    return caches, indexes
