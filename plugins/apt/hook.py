"""What apt's and dpkg's hooks run: `python3 -I -m ashplugins.apt.hook PHASE`.

Phases (see files/80ashlayers and files/ashlayers.dpkg.cfg):
- `begin`  apt's DPkg::Pre-Install-Pkgs (protocol 3): the package actions arrive on stdin;
           a non-zero exit stops apt before dpkg runs.
- `commit` apt's DPkg::Post-Invoke (it fires after a failed dpkg run too).
- `dpkg-begin`, `dpkg-commit`  dpkg's own pre-invoke / post-invoke, for dpkg run alone
           (`dpkg -i ./foo.deb`) or by a front end that runs no apt hooks. Under apt they join
           apt's transaction (the wrapper script skips them before Python starts).

One apt run is one layer: apt can run its hooks more than once per run; the core reopens the
layer its owner (the apt process) made. A run that changes no package makes none.

Failure: a run failed when it left a package part-way (half-installed, unpacked,
half-configured). Only the package database tells: neither apt's nor dpkg's post hook gets an
exit status. For apt, any such package counts: apt retries every unfinished package in each
run and exits 100 while one fails. For dpkg alone, only the packages its command line names
count (`dpkg -i ./foo.deb` does not touch another half-configured package), or all of them
when it names none (`dpkg --configure -a`).
"""

from __future__ import annotations

import os
import sys

from ashplugins.apt.command import (
    command_of,
    dpkg_targets,
    find_manager,
    layer_name,
    pre_install_targets,
)
from ashplugins.apt.database import AptDatabase, unfinished

PLUGIN = "apt"
PHASES = ("begin", "commit", "dpkg-begin", "dpkg-commit")
USAGE = "usage: python3 -m ashplugins.apt.hook " + "|".join(PHASES) + " (run by apt and dpkg)"


def _skipped() -> bool:
    return os.environ.get("ASH_SKIP", "") not in ("", "0")


def main(args: list[str]) -> int:
    """The hook's entry point: an error of the hook's own is one line (ashcore.hook.guarded)."""
    from ashcore.hook import guarded

    phase = args[0] if len(args) == 1 else ""
    return guarded(lambda: _main(args), before=phase.endswith("begin"))


def _main(args: list[str]) -> int:
    phase = args[0] if len(args) == 1 else ""
    if phase not in PHASES:
        print(USAGE, file=sys.stderr)
        return 2
    dpkg = phase.startswith("dpkg-")
    if phase.endswith("commit") and _skipped():
        return 0  # nothing was begun
    # dpkg tells its hooks its root (--root, --instdir); apt's hooks run in apt's root.
    root = (os.environ.get("DPKG_ROOT") or "/") if dpkg else "/"
    owner = find_manager(os.getppid())
    argv = command_of(owner, "dpkg" if dpkg else "apt")
    manager = "dpkg" if dpkg else "apt"

    from ashcore.hook import begin_hook

    if phase.endswith("begin"):
        if dpkg:
            targets = dpkg_targets(argv)
        else:
            targets = (
                [] if sys.stdin is None or sys.stdin.isatty() else pre_install_targets(sys.stdin)
            )
        return begin_hook(
            root=root,
            plugin=PLUGIN,
            manager=manager,
            argv=argv,
            owner_pid=owner,
            database=AptDatabase,
            targets=targets,
            name=layer_name(argv),  # the user's ASH_NAME wins
            # apt's run: this process stays to seal the layer when Post-Invoke's ash-commit
            # asks, and describes it once apt is done (ashcore/linger.py): the post hook
            # starts no Python.
            commit=None if dpkg else (lambda exited: _describe(root, argv, owner, exited)),
        )
    return _commit(root, manager, argv, owner, dpkg)


def _describe(root: str, argv: tuple[str, ...], owner: int, exited: float | None) -> int:
    """The helper's part: the layer sealed at apt's last Post-Invoke. Failed when a package
    is left part-way in it (AptDatabase.failed)."""
    from ashcore.hook import commit_hook

    return commit_hook(
        root=root,
        plugin=PLUGIN,
        manager="apt",
        argv=argv,
        owner_pid=owner,
        database=AptDatabase,
        failed=None,
        helper=True,
        helper_exit=exited,
    )


def _commit(root: str, manager: str, argv: tuple[str, ...], owner: int, dpkg: bool) -> int:
    from ashcore.hook import commit_hook

    database = AptDatabase()
    unpack_only = dpkg and os.environ.get("DPKG_HOOK_ACTION") == "unpack"
    try:
        among = dpkg_targets(argv) if dpkg else ()
        broken = unfinished(database.read_installed(root), among=among, unpack_only=unpack_only)
    except Exception:  # the core reads it again and reports what is wrong
        database, broken = AptDatabase(), []
    return commit_hook(
        root=root,
        plugin=PLUGIN,
        manager=manager,
        argv=argv,
        owner_pid=owner,
        database=lambda: database,
        failed=bool(broken),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
