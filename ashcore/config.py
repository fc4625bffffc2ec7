"""Configuration: /etc/ash/ash.toml and /etc/ash/hooks.d/<plugin>.toml inside the target root.

Files are refused unless owned by root and not writable by group or others, as sudo
refuses its sudoers. A file holding only comments is not parsed (tomllib costs the hot path
milliseconds).
"""

from __future__ import annotations

import os
import stat

from ashcore.errors import ConfigError
from ashcore.registry import lock_paths, noise_paths, state_paths
from ashcore.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONFIG_PATH = "etc/ash/ash.toml"
HOOKS_DIR = "etc/ash/hooks.d"
THROWAWAY_MARK = "/run/ashlayers-throwaway"
"""Written at boot by the initramfs script (ashcore/boot.py) when a layer was booted from the
menu as a throwaway copy: the layer's id. No layer is made there."""

DEFAULT_NOISE = (
    "tmp",
    "var/tmp",
    "run",
    "var/run",
    "var/log",
    "var/cache",
    "var/backups",
    "root/.cache",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/timers",
    "var/lib/dhcp",
    "etc/mtab",
    "*/__pycache__",
    "*/__pycache__/*",
)
"""Paths (relative to the root; a directory covers all below it) whose changes are not drift,
besides each manager's own noise (ashcore/manager.py)."""

DEFAULT_DATA = (
    "home",
    "root",
    "srv",
    "var/log",
    "var/mail",
    "var/spool",
    "var/tmp",
    "var/lib/postgresql",
    "var/lib/mysql",
    "var/lib/docker",
    "var/lib/containers",
    "var/lib/libvirt",
    "var/lib/machines",
)
"""Places that hold users' data, not software: each is a subvolume of its own that every
deployment mounts (ashcore/data.py), so no layer holds it and no rollback changes it. AshOS
kept home directories out of its snapshots; openSUSE's layout and rpm-ostree's /var do the
same. [data] add / remove in ash.toml change the list."""

NEVER_DATA = ("etc", "usr", "boot", "bin", "sbin", "lib", "lib64", "proc", "sys", "dev", "run")
"""Top folders that hold the system itself (or the kernel's): never a data place, nor above one."""


BOOT_ENTRIES = 5
"""Layers the boot menu offers (newest first), as grub-btrfs offers snapper's snapshots."""

WARN_FREE = 1 << 30
"""Below this many free bytes (or 10% of the filesystem, when that is less), each operation's
hook warns; retention.warn_free sets it exactly."""


def default_noise() -> tuple[str, ...]:
    """The core's noise and every registered manager's."""
    return DEFAULT_NOISE + noise_paths()


class Retention(Value):
    """[retention]: the rules of `ashctl prune` (ashcore/prune.py), and the free-space warning."""

    __slots__ = ("keep", "keep_base", "keep_days", "max_size", "warn_free")
    keep: int | None
    keep_days: float | None
    keep_base: bool
    max_size: int | None  # bytes
    warn_free: int | None  # bytes; 0: never warn; None: WARN_FREE or 10% of the filesystem

    def __init__(
        self,
        keep: int | None = None,
        keep_days: float | None = None,
        keep_base: bool = True,
        max_size: int | None = None,
        warn_free: int | None = None,
    ) -> None:
        self._init(
            keep=keep,
            keep_days=keep_days,
            keep_base=keep_base,
            max_size=max_size,
            warn_free=warn_free,
        )


class Config(Value):
    __slots__ = (
        "boot_entries",
        "data",
        "lock_files",
        "lock_timeout",
        "noise",
        "on_error",
        "retention",
        "store",
        "trusted_keys",
    )
    store: str
    on_error: str
    lock_timeout: float
    noise: tuple[str, ...]
    lock_files: tuple[str, ...]
    retention: Retention
    boot_entries: int  # layers offered in the boot menu, newest first (ashcore/boot.py)
    data: tuple[str, ...]  # users' data places, kept out of layers (ashcore/data.py)
    trusted_keys: tuple[str, ...]  # [fleet]: OpenPGP keyrings a pulled line must be signed by

    def __init__(
        self,
        store: str = "/.ash",
        on_error: str = "abort",
        lock_timeout: float = 600.0,
        noise: tuple[str, ...] | None = None,
        lock_files: tuple[str, ...] | None = None,
        retention: Retention | None = None,
        boot_entries: int = BOOT_ENTRIES,
        data: tuple[str, ...] = DEFAULT_DATA,
        trusted_keys: tuple[str, ...] = (),
    ) -> None:
        self._init(
            data=data,
            trusted_keys=trusted_keys,
            store=store,
            on_error=on_error,
            lock_timeout=lock_timeout,
            noise=default_noise() if noise is None else noise,
            lock_files=lock_paths() if lock_files is None else lock_files,
            retention=retention or Retention(),
            boot_entries=boot_entries,
        )


class HookConfig(Value):
    __slots__ = ("enabled", "skip_commands", "skip_packages")
    enabled: bool
    skip_packages: tuple[str, ...]
    skip_commands: tuple[str, ...]

    def __init__(
        self,
        enabled: bool = True,
        skip_packages: tuple[str, ...] = (),
        skip_commands: tuple[str, ...] = (),
    ) -> None:
        self._init(enabled=enabled, skip_packages=skip_packages, skip_commands=skip_commands)


def _read_checked(path: str) -> str | None:
    """The text of a config file, or None if there is none; refuse an unsafe one."""
    try:
        # O_NONBLOCK: a FIFO put at a config path must not hang every package operation.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path} is not a regular file", hint="remove it")
        if st.st_uid != 0:
            raise ConfigError(
                f"refusing {path}: owned by uid {st.st_uid}, not root",
                hint=f"run: chown root:root {path}",
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"refusing {path}: writable by group or others",
                hint=f"run: chmod go-w {path}",
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text", hint="fix or remove the file") from e


def _parse(path: str, text: str) -> dict[str, Any]:
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return {}
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}", hint="fix the file") from e


def _get(path: str, data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{path}: '{key}' has the wrong type", hint="see README.md")
    return value


def _strings(path: str, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = _get(path, data, key, list)
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: '{key}' must be a list of strings", hint="see README.md")
    return tuple(value)


def _paths(path: str, data: dict[str, Any], key: str) -> tuple[str, ...]:
    """Paths inside the root: relative, normalised, no `..` (a lock file is deleted from
    each new layer: an absolute or escaping one would name a live file)."""
    values = _strings(path, data, key)
    for value in values:
        parts = value.split("/")
        if (
            not value
            or value.startswith("/")
            or any(p in ("", ".", "..") for p in parts)
            or "\0" in value
        ):
            raise ConfigError(
                f"{path}: '{key}' entry {value!r} is not a plain path inside the root",
                hint="write it relative to the root, as var/lib/myapp/lock",
            )
    return values


def _check_keys(path: str, data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting '{unknown[0]}'", hint="see README.md")


def load_config(root: str) -> Config:
    path = os.path.join(root, CONFIG_PATH)
    text = _read_checked(path)
    if text is None:
        return Config()
    data = _parse(path, text)
    known = {"store", "on_error", "lock_timeout", "noise", "lock_files", "retention", "data"}
    _check_keys(path, data, known | {"boot_entries", "fleet"})
    base = Config()
    on_error = _get(path, data, "on_error", str) if "on_error" in data else base.on_error
    if on_error not in ("abort", "warn"):
        raise ConfigError(f'{path}: on_error must be "abort" or "warn"', hint="fix the file")
    store = _get(path, data, "store", str) if "store" in data else base.store
    if not store.startswith("/") or ".." in store.split("/"):
        raise ConfigError(f"{path}: store must be an absolute path", hint="fix the file")
    timeout = (
        float(_get(path, data, "lock_timeout", (int, float)))
        if "lock_timeout" in data
        else base.lock_timeout
    )
    if not 0 <= timeout <= 86400:  # nan fails this too
        raise ConfigError(f"{path}: lock_timeout must be 0 to 86400 seconds", hint="fix the file")
    retention = Retention()
    if "retention" in data:
        section = _get(path, data, "retention", dict)
        retention = _retention(path, section)
    noise = base.noise + (_paths(path, data, "noise") if "noise" in data else ())
    locks = base.lock_files + (_paths(path, data, "lock_files") if "lock_files" in data else ())
    entries = _get(path, data, "boot_entries", int) if "boot_entries" in data else base.boot_entries
    if isinstance(entries, bool) or not 0 <= entries <= 100:
        raise ConfigError(f"{path}: boot_entries must be 0 to 100", hint="e.g. boot_entries = 5")
    places = _data(path, _get(path, data, "data", dict), store) if "data" in data else base.data
    keys: tuple[str, ...] = ()
    if "fleet" in data:
        section = _get(path, data, "fleet", dict)
        _check_keys(path, section, {"trusted_keys"})
        keys = _strings(path, section, "trusted_keys") if "trusted_keys" in section else ()
        if any(not k.startswith("/") for k in keys):
            raise ConfigError(
                f"{path}: [fleet] trusted_keys must be absolute paths (in the root)",
                hint='e.g. trusted_keys = ["/etc/ash/fleet.gpg"]',
            )
    return Config(store, on_error, timeout, noise, locks, retention, entries, places, keys)


def _data(path: str, section: dict[str, Any], store: str) -> tuple[str, ...]:
    """[data]: the default places, less `remove`, plus `add`. A place may not be the system's
    own (/etc, /usr...), hold the store, nor sit inside another place (a subvolume mounted
    inside a mounted subvolume would be hidden by a rollback of neither)."""
    _check_keys(path, section, {"add", "remove"})
    add = _paths(path, section, "add") if "add" in section else ()
    remove = _paths(path, section, "remove") if "remove" in section else ()
    places = [p.rstrip("/") for p in DEFAULT_DATA if p not in remove] + [
        p.rstrip("/") for p in add if p not in DEFAULT_DATA
    ]
    store_rel = store.strip("/")
    for place in places:
        top = place.split("/")[0]
        if top in NEVER_DATA or place == store_rel or store_rel.startswith(place + "/"):
            raise ConfigError(
                f"{path}: data place {place!r} holds the system itself, not users' data",
                hint="name a folder of data, as srv/www or var/lib/redis",
            )
        if any(
            place == s or s.startswith(place + "/") or place.startswith(s + "/")
            for s in state_paths()
        ):
            raise ConfigError(
                f"{path}: data place {place!r} holds a package manager's database",
                hint="a layer must hold that: name another folder",
            )
    for place in places:
        for other in places:
            if other != place and place.startswith(other + "/"):
                raise ConfigError(
                    f"{path}: data place {place!r} is inside {other!r}",
                    hint="keep only the outer one, or remove it with [data] remove",
                )
    return tuple(dict.fromkeys(places))


def _size(path: str, section: dict[str, Any], key: str) -> int:
    from ashcore.text import parse_size

    value = _get(path, section, key, (str, int))
    try:
        return parse_size(str(value)) if not isinstance(value, int) else value
    except ValueError as e:
        raise ConfigError(f"{path}: retention.{key}: {e}", hint='e.g. "20G"') from None


def _retention(path: str, section: dict[str, Any]) -> Retention:
    _check_keys(path, section, {"keep", "keep_days", "keep_base", "max_size", "warn_free"})
    keep = _get(path, section, "keep", int) if "keep" in section else None
    days = float(_get(path, section, "keep_days", (int, float))) if "keep_days" in section else None
    if keep is not None and (isinstance(keep, bool) or keep < 0):
        raise ConfigError(f"{path}: retention.keep must be 0 or more", hint="e.g. keep = 10")
    if days is not None and not 0 <= days <= 36500:  # nan fails this too
        raise ConfigError(f"{path}: retention.keep_days must be 0 to 36500", hint="fix the file")
    return Retention(
        keep=keep,
        keep_days=days,
        keep_base=_get(path, section, "keep_base", bool) if "keep_base" in section else True,
        max_size=_size(path, section, "max_size") if "max_size" in section else None,
        warn_free=_size(path, section, "warn_free") if "warn_free" in section else None,
    )


def load_hook_config(root: str, plugin: str) -> HookConfig:
    path = os.path.join(root, HOOKS_DIR, f"{plugin}.toml")
    text = _read_checked(path)
    if text is None:
        return HookConfig()
    data = _parse(path, text)
    _check_keys(path, data, {"enabled", "skip_packages", "skip_commands"})
    return HookConfig(
        enabled=_get(path, data, "enabled", bool) if "enabled" in data else True,
        skip_packages=_strings(path, data, "skip_packages") if "skip_packages" in data else (),
        skip_commands=_strings(path, data, "skip_commands") if "skip_commands" in data else (),
    )
