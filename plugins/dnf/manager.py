"""dnf5 and dnf (dnf4), which share the rpmdb, declared for the core (ashcore/manager.py)."""

from __future__ import annotations

from ashcore.manager import Manager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.model import PackageDatabase


class Dnf(Manager):
    name = "dnf"
    programs = ("usr/bin/dnf5", "usr/bin/dnf-3", "usr/bin/rpm")
    state = ("var/lib/rpm", "usr/lib/sysimage/rpm", "var/lib/dnf", "usr/lib/sysimage/libdnf5")
    noise = (
        "var/lib/dnf/repos",
        "var/lib/rpm/.rpm.lock",
        "var/lib/rpm/.dbenv.lock",
        # SQLite's shared-memory index of a WAL database: written through a mapping, so its
        # ctime moves at writeback, seconds after the manager exited (dnf5's history).
        "var/lib/rpm/rpmdb.sqlite-shm",
        "usr/lib/sysimage/rpm/rpmdb.sqlite-shm",
        "usr/lib/sysimage/libdnf5/transaction_history.sqlite-shm",
        "var/lib/dnf/history.sqlite-shm",
        "var/lib/dnf/rpmdb_lock.pid",
        "var/lib/dnf/system-repo.lock",
        "var/lib/dnf/plugins/local",
        "var/lib/dnf/plugins/local-nogpgcheck",
    )
    # Downloaded packages and repository metadata, refetched at need.
    caches = (
        ("var/cache/libdnf5", "usr/bin/dnf5"),
        ("var/cache/dnf", "usr/bin/dnf-3"),
    )
    commands = ("dnf", "dnf5", "dnf-3", "dnf4", "yum")
    recorded_as = ("dnf5", "dnf4")
    verbs = frozenset(
        {
            "install",
            "remove",
            "erase",
            "upgrade",
            "update",
            "downgrade",
            "reinstall",
            "autoremove",
            "distro-sync",
            "swap",
            "group",
        }
    )
    yes = ("-y", "--assumeyes")
    installer = "ashplugins.dnf.install"
    package_files = (".rpm",)
    sources = ("etc/yum.repos.d", "etc/dnf/dnf.conf", "etc/dnf/vars")
    refresh = ("dnf", "-q", "makecache")
    owner_query = ("rpm", "--query", "--file", "--queryformat", "%{NAME}\\n", "--")

    def database(self) -> PackageDatabase:
        from ashplugins.dnf.rpmdb import RpmDatabase

        face: PackageDatabase = RpmDatabase()
        return face
