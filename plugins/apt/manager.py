"""apt and dpkg, declared for the core (ashcore/manager.py)."""

from __future__ import annotations

from ashcore.manager import Manager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.model import PackageDatabase, PackageDelta


class Apt(Manager):
    name = "apt"
    programs = ("usr/bin/dpkg",)
    state = ("var/lib/dpkg", "var/lib/apt", "var/lib/aptitude")
    # python-apt's Cache(rootdir=...) (unattended-upgrade's) creates an empty sources.list
    # as it starts where there is none (deb822 sources.list.d only, as sid's and trixie's).
    made_at_start = ("etc/apt/sources.list",)
    noise = (
        "var/lib/apt/lists",
        "var/lib/apt/extended_states.lock",
        "var/lib/dpkg/lock",
        "var/lib/dpkg/lock-frontend",
        "var/lib/dpkg/triggers/Lock",
        # unattended-upgrade writes, as it ends, the packages it kept back (a view of the
        # mirror, rewritten every run) and apt's periodic jobs their stamps (times).
        "var/lib/unattended-upgrades",
        "var/lib/apt/periodic",
    )
    # pkgcache.bin and srcpkgcache.bin (rewritten by every apt run: 50 MB each with sid's
    # full list) and the downloaded archives. Chosen by measurement (`bench/bench_space.py
    # --ops 10`, rig root with sid's full main list, `apt-get install`/`remove` of a one-file
    # package alternating): 0.63 MiB per operation (0.22 MiB data, 0.22 MiB metadata twice):
    # dpkg's status and status-old (0.29 MiB each before compression), apt's extended_states
    # and logs, and the metadata a snapshot and the next run's writes copy. An `apt-get
    # update` that finds a new list, then an install: 17.1 MiB per layer with the lists in
    # the root's subvolume, 0.6-0.85 MiB with them nested. dpkg's status-old and debconf's
    # *.dat-old stay: they sit beside the state they back up.
    caches = (("var/cache/apt", "usr/bin/apt-get"),)
    # 62 MB for sid main; every `apt update` that finds news writes them anew.
    indexes = (
        ("var/lib/apt/lists", "usr/bin/apt-get"),
        # aptitude's pkgstates and pkgstates.old (7.9 MB each with sid's lists), rewritten by
        # every aptitude run: 16-17 MiB in each of its layers and in the drift after it. They
        # hold its view of the lists (which packages are new) and its pending selections,
        # which it rebuilds, and also marks of its own (forbid-version, user tags): those are
        # the admin's wishes about the mirror, not the installed system, so they are carried
        # over (not rolled back) as the lists they refer to are. What aptitude's choices rest
        # on that is state (holds in dpkg's status, automatic marks in apt's
        # extended_states) stays in every layer. Made in any apt root: aptitude is often
        # installed after setup.
        ("var/lib/aptitude", "usr/bin/apt-get"),
    )
    commands = ("apt", "apt-get", "aptitude")
    recorded_as = ("dpkg",)  # a layer dpkg made alone
    verbs = frozenset(
        {
            "install",
            "remove",
            "purge",
            "upgrade",
            "full-upgrade",
            "dist-upgrade",
            "autoremove",
            "autopurge",
            "reinstall",
            "markauto",
            "unmarkauto",
        }
    )
    yes = ("-y", "--yes", "--assume-yes")
    installer = "ashplugins.apt.install"
    package_files = (".deb",)
    sources = ("etc/apt/sources.list", "etc/apt/sources.list.d", "etc/apt/trusted.gpg.d")
    refresh = ("apt-get", "update", "-q")
    owner_query = ("dpkg-query", "--search", "--")

    def owners_said(self, output: str, path: str) -> list[str]:
        """`pkg1, pkg2:arch: /path` lines; `diversion by pkg from/to: /path` is not a
        package's ownership."""
        found: set[str] = set()
        for line in output.splitlines():
            if line.startswith("diversion by ") or not line.endswith(": " + path):
                continue
            for name in line[: -len(": " + path)].split(","):
                if name.strip():
                    found.add(name.strip().split(":")[0])
        return sorted(found)

    def database(self) -> PackageDatabase:
        from ashplugins.apt.database import AptDatabase

        face: PackageDatabase = AptDatabase()
        return face

    def describe_change(self, paths: list[str], before: str, after: str) -> str | None:
        from ashplugins.apt.marks import describe

        said: str | None = describe(paths, before, after)
        return said

    def install_argv(self, delta: PackageDelta) -> list[str] | None:
        from ashplugins.apt.database import decode

        wanted = []
        for name, version in (
            *delta.added,
            *((n, new) for n, _, new in delta.upgraded + delta.downgraded),
        ):
            number, state = decode(version)
            if state != "installed":
                return None  # left part-way: no command makes that again
            wanted.append(f"{name}={number}")
        wanted += [f"{name}-" for name, _ in delta.removed]  # apt-get's own removal syntax
        if not wanted:
            return None
        downgrades = ["--allow-downgrades"] if delta.downgraded else []
        return ["apt-get", "-y", *downgrades, "install", *wanted]
