"""The database face: the installed packages of any root, read with python-apt (`apt_pkg`).

The root's dpkg status file is read with `apt_pkg.TagFile` (no cache is built, no lock taken,
so it works while apt holds its locks around the hooks). A package that dpkg left part-way
(half-installed, unpacked, half-configured) keeps that state in its version string, e.g.
"1.0 (half-configured)": finishing its configuration (`apt-get -f install`) is then a change
of the set like any other. Debian versions hold no spaces, so the suffix is unambiguous.
Packages in the config-files state (removed, not purged) are not installed.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping

from ashcore.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATUS_FILE = "var/lib/dpkg/status"

# dpkg's package states, in the order a package goes through them when installed.
UNFINISHED = ("half-installed", "unpacked", "half-configured")
FINISHED = ("triggers-awaited", "triggers-pending", "installed")  # configured, as dpkg says
STATE_RANK = {state: rank for rank, state in enumerate((*UNFINISHED, "installed"))}


class Entry(Value):
    """One package of the status file, as far as the layers care. (A Value, not a dataclass:
    this module is on the hook's path.)"""

    __slots__ = ("arch", "name", "state", "version")
    name: str
    arch: str
    version: str
    state: str

    def __init__(self, name: str, arch: str, version: str, state: str) -> None:
        self._init(name=name, arch=arch, version=version, state=state)


def _apt_pkg() -> Any:
    import apt_pkg

    return apt_pkg


def entry_of(section: Mapping[str, str]) -> Entry | None:
    """The entry of a status stanza, or None when the package is not installed."""
    status = section.get("Status", "").split()
    state = status[2] if len(status) == 3 else ""
    if state not in UNFINISHED and state not in FINISHED:
        return None  # not-installed, config-files, or a stanza dpkg would not write
    return Entry(section["Package"], section.get("Architecture", ""), section["Version"], state)


def encode(version: str, state: str) -> str:
    """The version as the layers record it: "1.0", or "1.0 (half-configured)"."""
    return version if state in FINISHED else f"{version} ({state})"


def decode(version: str) -> tuple[str, str]:
    """(version, state) of an encoded version; the state is "installed" when none is shown."""
    head, sep, tail = version.partition(" (")
    if sep and tail.endswith(")"):
        return head, tail[:-1]
    return version, "installed"


def installed_set(entries: Iterable[Entry]) -> dict[str, str]:
    """name -> encoded version. Packages of a foreign architecture are named `name:arch`.

    The native architecture is that of dpkg itself (the root's, not this machine's).
    """
    listed = list(entries)
    native = next((e.arch for e in listed if e.name == "dpkg"), "")
    result: dict[str, str] = {}
    for e in listed:
        key = e.name if e.arch in ("all", native, "") else f"{e.name}:{e.arch}"
        result[key] = encode(e.version, e.state)
    return result


def unfinished(
    installed: Mapping[str, str],
    *,
    among: Collection[str] = (),
    unpack_only: bool = False,
) -> list[str]:
    """Packages that dpkg left part-way: "name (state)"; only those named in `among` when it
    is not empty. An unpack-only run (`dpkg --unpack`) leaves packages unpacked on purpose."""
    found = []
    for name, version in sorted(installed.items()):
        state = decode(version)[1]
        if among and name.partition(":")[0] not in among:
            continue
        if state in UNFINISHED and not (unpack_only and state == "unpacked"):
            found.append(f"{name} ({state})")
    return found


def read_entries(path: str) -> list[Entry]:
    if not os.path.exists(path):
        return []
    with _apt_pkg().TagFile(path) as sections:
        return [e for e in map(entry_of, sections) if e is not None]


class AptDatabase:
    """`read_installed` and `compare_versions` for the core, by dpkg's own rules.

    One instance reads a root once: a hook that looks at the set itself (to tell whether dpkg
    failed) and then hands the instance to the core pays for one read, not two.
    """

    def state_paths(self, root: str) -> tuple[str, ...]:
        """What `read_installed` reads: dpkg's status file."""
        return (STATUS_FILE,)

    def __init__(self) -> None:
        self._read: dict[str, dict[str, str]] = {}
        self._system_ready = False

    def read_installed(self, root: str) -> dict[str, str]:
        root = os.path.abspath(root)
        if root not in self._read:
            self._read[root] = installed_set(read_entries(os.path.join(root, STATUS_FILE)))
        return dict(self._read[root])

    def failed(self, before: Mapping[str, str], after: Mapping[str, str]) -> bool:
        """An apt run failed when it left a package part-way: apt retries every unfinished
        package in each run and exits 100 while one fails."""
        return bool(unfinished(after))

    def forget(self, root: str) -> None:
        """Read the root anew next time (its packages changed since)."""
        self._read.pop(os.path.abspath(root), None)

    def compare_versions(self, a: str, b: str) -> int:
        (va, sa), (vb, sb) = decode(a), decode(b)
        if va != vb:
            apt_pkg = _apt_pkg()
            if not self._system_ready:
                apt_pkg.init_config()
                apt_pkg.init_system()
                self._system_ready = True
            result: int = apt_pkg.version_compare(va, vb)
            if result:
                return (result > 0) - (result < 0)
        ra, rb = STATE_RANK.get(sa, len(STATE_RANK)), STATE_RANK.get(sb, len(STATE_RANK))
        return (ra > rb) - (ra < rb)
