"""zypper (libzypp), declared for the core (ashcore/manager.py)."""

from __future__ import annotations

from ashcore.manager import Manager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.model import PackageDatabase


class Zypper(Manager):
    name = "zypper"
    programs = ("usr/bin/zypper",)
    # Its package database is the rpmdb, which dnf declares; its own: the packages it
    # installed as dependencies (AutoInstalled), locks (SoftLocks, /etc/zypp/locks is config).
    state = ("var/lib/zypp",)
    noise = ("var/lib/zypp/AnonymousUniqueId", "var/lib/zypp/LastDistributionFlavor")
    # Repository metadata (raw) and its solv cache: carried like apt's lists, so that a
    # repository without autorefresh still installs after a rollback.
    indexes = (("var/cache/zypp", "usr/bin/zypper"),)
    commands = ("zypper",)
    verbs = frozenset(
        {
            "install",
            "in",
            "remove",
            "rm",
            "update",
            "up",
            "dist-upgrade",
            "dup",
            "patch",
            "install-new-recommends",
            "inr",
        }
    )
    yes = ("--non-interactive", "-n")
    installer = "ashplugins.zypper.install"
    package_files = (".rpm",)
    sources = ("etc/zypp/repos.d", "etc/zypp/services.d")
    refresh = ("zypper", "--non-interactive", "refresh")
    shares_database = "dnf"

    def database(self) -> PackageDatabase:
        from ashplugins.dnf.rpmdb import RpmDatabase

        face: PackageDatabase = RpmDatabase()
        return face
