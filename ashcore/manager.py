"""The contract of a package manager: what the core may ask of each plugin.

Each plugin declares one subclass of `Manager` (as mkosi declares its package managers) in
`ashplugins/<name>/manager.py`, registered by one line in `ashplugins/__init__.py`. The core
asks the registry (ashcore/registry.py) and names no manager: its state, noise and lock
paths, the caches and lists kept out of layers, how to read its database, how to make its
commands non-interactive for a replay, and its hook files are all said here.

A declaration is data and cheap methods: importing it imports no binding and nothing slow
(every hook reads the declarations of all managers for the drift rules). A manager's
bindings are imported by its database face, at first use.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from ashcore.model import PackageDatabase, PackageDelta


class Manager:
    """One package manager (or a family sharing one database, as dnf5 and dnf4 do)."""

    name: ClassVar[str] = ""
    """The plugin's name: its /etc/ash/hooks.d/<name>.toml, and a layer's origin."""
    programs: ClassVar[tuple[str, ...]] = ()
    """Files (relative to a root) whose presence says the manager is installed there."""
    state: ClassVar[tuple[str, ...]] = ()
    """Its own databases. A manager writes them as it starts, before its pre hook, and after
    its last post hook: such writes are told by their time and are not drift; any other
    change to them (a mark, a --justdb) is."""
    made_at_start: ClassVar[tuple[str, ...]] = ()
    """Files outside its state that a front end creates as it starts when they are missing
    (before its pre hook): made then, they are its own, as its start-up writes to its state
    are, and go with its layer; made at any other time, drift. Unlike state, a replay and a
    recipe carry them."""
    noise: ClassVar[tuple[str, ...]] = ()
    """Paths (a folder covers all below it) it writes while only reading, or after its post
    hook, that are no change of the system's state: never drift."""
    lock_files: ClassVar[tuple[str, ...]] = ()
    """Lock files it holds while it runs its hooks: never kept inside a layer."""
    caches: ClassVar[tuple[tuple[str, str], ...]] = ()
    """Folders it refetches or rebuilds (downloaded packages, metadata, its binary caches):
    each a subvolume of its own, in no layer; a rollback gives the new deployment empty ones.
    (folder, the program whose presence in the root makes it) pairs."""
    indexes: ClassVar[tuple[tuple[str, str], ...]] = ()
    """The repositories' package lists: kept out like caches, but a rollback carries the
    current ones over (the manager cannot install without them). (folder, program) pairs."""
    commands: ClassVar[tuple[str, ...]] = ()
    """The command words of its front ends whose layers a replay may run again."""
    recorded_as: ClassVar[tuple[str, ...]] = ()
    """The names its hooks record as a layer's manager besides `name` (the front end that
    ran): a pulled record keeps its manager only when it is one of these or `name`."""
    verbs: ClassVar[frozenset[str]] = frozenset()
    """The sub-commands of those front ends that change packages (install, remove...)."""
    yes: ClassVar[tuple[str, ...]] = ("-y",)
    """The option that makes a command non-interactive (first: the one added)."""
    sources: ClassVar[tuple[str, ...]] = ()
    """Its repositories' configuration (a folder covers all below it): a change there makes
    its package lists stale."""
    refresh: ClassVar[tuple[str, ...]] = ()
    """The command that fetches its package lists anew, non-interactive."""
    installer: ClassVar[str] = ""
    """The module of its installer face: `detect(root)`, `install(root)`, `uninstall(root)`
    (imported only by `ashctl setup`)."""
    shares_database: ClassVar[str] = ""
    """The manager whose database this one writes too (a second front end of the rpmdb): its
    installed set is recorded once, under that manager's name."""
    package_files: ClassVar[tuple[str, ...]] = ()
    """Suffixes of its package files: a command line naming one cannot be replayed (the
    file may be gone, or on another machine)."""
    owner_query: ClassVar[tuple[str, ...]] = ()
    """The command (a path is appended) with which the manager names the packages that own
    a path, as it answers a user: run chrooted into a root by `owner_of`. Empty: it has
    none, or another front end of its database answers (`shares_database`)."""

    def present(self, root: str) -> bool:
        """Whether the manager is installed in `root`."""
        return any(os.path.exists(os.path.join(root, p)) for p in self.programs)

    def replay_argv(self, argv: list[str]) -> list[str] | None:
        """`argv` made non-interactive, when it is one of this manager's package-changing
        command lines; None when it is not this manager's."""
        if not argv or os.path.basename(argv[0]) not in self.commands:
            return None
        words = [a for a in argv[1:] if not a.startswith("-")]
        if not words or words[0] not in self.verbs:
            return None
        if set(self.yes) & set(argv) or any(
            a.startswith("-") and not a.startswith("--") and self.yes[0][1:] in a for a in argv[1:]
        ):
            return argv
        return [argv[0], self.yes[0], *argv[1:]]

    def owns(self, argv: list[str] | tuple[str, ...]) -> bool:
        """Whether `argv` runs one of this manager's front ends."""
        return bool(argv) and os.path.basename(argv[0]) in self.commands

    def describe_change(self, paths: list[str], before: str, after: str) -> str | None:
        """What a change made to its own state alone did, in a few words (`hold htop`), read
        from the roots `before` and `after` (the layer before and the one after); `paths`, the
        files of its state that changed (relative to the roots). None when it cannot say for
        all of them: a drift layer then shows the paths."""
        return None

    def install_argv(self, delta: PackageDelta) -> list[str] | None:
        """A command line of its front end that makes the change `delta` in a root that has
        the packages before it: what it added, upgraded or downgraded installed at those
        versions, what it removed removed; non-interactive. None when it cannot (no such
        command, or a version that is no finished install)."""
        return None

    def database(self) -> PackageDatabase:
        """Its database face: reads any root's installed set with the manager's bindings."""
        raise NotImplementedError(f"{type(self).__name__} declares no database")

    def owner_of(self, root: str, path: str) -> list[str] | None:
        """The packages that own `path` (absolute, as the root sees it) in `root` (a layer's
        read-only snapshot, or a root), asked of the root's own tools chrooted into it: []
        when it says none does, None when it cannot answer (absent, no such command)."""
        import subprocess

        if not self.owner_query or not self.present(root):
            return None
        try:
            result = subprocess.run(
                ["chroot", root, *self.owner_query, path],
                capture_output=True,
                text=True,
                errors="surrogateescape",
                stdin=subprocess.DEVNULL,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode == 1:
            return []  # each of them: "no package owns it"
        if result.returncode != 0:
            return None
        return self.owners_said(result.stdout, path)

    def owners_said(self, output: str, path: str) -> list[str]:
        """The package names in `owner_query`'s output for `path` (one a line by default)."""
        return sorted({line.strip() for line in output.splitlines() if line.strip()})

    def detect(self, root: str) -> bool:
        """Whether `ashctl setup` installs this manager's hook files in `root`."""
        return bool(self._installer().detect(root))

    def install(self, root: str) -> list[str]:
        """Write its hook files into `root`; returns the paths written (inside the root)."""
        return list(self._installer().install(root))

    def uninstall(self, root: str) -> list[str]:
        """Remove its hook files from `root`; returns the paths removed."""
        return list(self._installer().uninstall(root))

    def _installer(self) -> Any:
        if not self.installer:
            raise NotImplementedError(f"{type(self).__name__} declares no hook files")
        import importlib

        return importlib.import_module(self.installer)
