"""pacman, declared for the core (ashcore/manager.py)."""

from __future__ import annotations

from ashcore.manager import Manager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.model import PackageDatabase


class Pacman(Manager):
    name = "pacman"
    programs = ("usr/bin/pacman", "bin/pacman")
    state = ("var/lib/pacman/local",)
    noise = ("var/lib/pacman/sync", "var/lib/pacman/db.lck")
    # pacman holds its lock while it runs its hooks: the post hook's snapshot has it.
    lock_files = ("var/lib/pacman/db.lck",)
    caches = (("var/cache/pacman/pkg", "usr/bin/pacman"),)
    indexes = (("var/lib/pacman/sync", "usr/bin/pacman"),)
    commands = ("pacman",)
    yes = ("--noconfirm",)
    installer = "ashplugins.pacman.install"
    package_files = (".pkg.tar.zst", ".pkg.tar.xz", ".pkg.tar.gz")
    sources = ("etc/pacman.conf", "etc/pacman.d")
    refresh = ("pacman", "-Sy", "--noconfirm")
    owner_query = ("pacman", "--query", "--owns", "--quiet", "--")

    def replay_argv(self, argv: list[str]) -> list[str] | None:
        """pacman's operations are options (-S, -R), not words."""
        if not argv or argv[0].rsplit("/", 1)[-1] not in self.commands:
            return None
        if not any(a.startswith(("-S", "-R", "--sync", "--remove")) for a in argv):
            return None
        return argv if "--noconfirm" in argv else [argv[0], "--noconfirm", *argv[1:]]

    def database(self) -> PackageDatabase:
        from ashplugins.pacman.database import PacmanDatabase

        face: PackageDatabase = PacmanDatabase()
        return face
