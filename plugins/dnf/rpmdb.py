"""The database face: the installed rpm set of any root, read with rpm's own bindings.

The rpm module is imported on first use only: it costs the hook processes milliseconds.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no typing import on the hot path
if TYPE_CHECKING:
    from typing import Any

SEPARATOR = ", "
"""Between the versions of a package installed more than once (install-only kernels)."""


def _evr(version: str) -> tuple[str, str, str]:
    epoch, _, rest = version.rpartition(":")
    ver, _, release = rest.partition("-")
    return (epoch or "0", ver, release)


NOT_PACKAGES = frozenset({"gpg-pubkey"})
"""rpmdb entries that are keys, not packages (libdnf5 leaves them out too)."""


def installed_set(entries: list[tuple[str, str, str]], compare: Any) -> dict[str, str]:
    """name -> EVR from (name, arch, evr) entries; an epoch of 0 is not shown.

    A name installed for several architectures is keyed `name.arch`; several versions of one
    name and arch are joined, oldest first, with SEPARATOR.
    """
    entries = [(n, a, e.removeprefix("0:")) for n, a, e in entries if n not in NOT_PACKAGES]
    arches: dict[str, set[str]] = {}
    for name, arch, _ in entries:
        arches.setdefault(name, set()).add(arch)
    grouped: dict[str, list[str]] = {}
    for name, arch, evr in entries:
        key = f"{name}.{arch}" if len(arches[name]) > 1 else name
        grouped.setdefault(key, []).append(evr)
    result: dict[str, str] = {}
    for key, versions in grouped.items():
        if len(versions) > 1:
            import functools

            versions = sorted(set(versions), key=functools.cmp_to_key(compare))
        result[key] = SEPARATOR.join(versions)
    return result


RPMDB_FOLDERS = ("var/lib/rpm", "usr/lib/sysimage/rpm")


class RpmDatabase:
    """The `PackageDatabase` of rpm: what `rpm --root ROOT -qa` shows, name -> [E:]V-R."""

    def state_paths(self, root: str) -> tuple[str, ...]:
        """What `read_installed` reads: the rpmdb, in either of its usual folders (its
        sqlite file and WAL, or Berkeley DB's Packages); rpm's shm and locks do not count."""
        return tuple(
            f"{folder}/{name}"
            for folder in RPMDB_FOLDERS
            for name in ("rpmdb.sqlite", "rpmdb.sqlite-wal", "Packages")
        )

    def read_installed(self, root: str) -> dict[str, str]:
        import rpm

        ts = rpm.TransactionSet(root)
        ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
        try:
            entries = [
                (str(h[rpm.RPMTAG_NAME]), str(h[rpm.RPMTAG_ARCH] or ""), str(h[rpm.RPMTAG_EVR]))
                for h in ts.dbMatch()
            ]
        finally:
            ts.closeDB()
        return installed_set(entries, self.compare_versions)

    def compare_versions(self, a: str, b: str) -> int:
        """rpm's order of two EVRs (the newest of each, for packages installed more than once)."""
        import rpm

        left, right = a.split(SEPARATOR)[-1], b.split(SEPARATOR)[-1]
        return int(rpm.labelCompare(_evr(left), _evr(right)))
