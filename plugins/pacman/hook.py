"""What the alpm hooks run (through /usr/libexec/ashlayers/pacman-hook pre|post).

alpm runs a hook chrooted into pacman's root, so the root is always "/"; the hook's parent is
pacman (the transaction's owner) and the targets arrive on stdin (NeedsTargets, pre only).
Exit code: the pre hook's non-zero stops pacman before any change (AbortOnFail).

A failed install script cannot be reported to the core: alpm tells only pacman's frontend
(which prints "error: command failed to execute correctly" and still exits 0); pacman.log
gets the script's output but not its exit status, and a hook gets neither. The layer is made
as committed; what the script printed is in pacman.log as [ALPM-SCRIPTLET] lines.
"""

from __future__ import annotations

import os
import sys

from ashplugins.pacman.command import command_of, layer_name, read_targets
from ashplugins.pacman.database import PacmanDatabase

from ashcore.hook import begin_hook, commit_hook, guarded

PLUGIN = "pacman"
USAGE = "usage: python3 -m ashplugins.pacman.hook pre|post (run by pacman's alpm hooks)"


def main(args: list[str]) -> int:
    """The hook's entry point: an error of the hook's own is one line (ashcore.hook.guarded)."""
    return guarded(lambda: _main(args), before=args[:1] == ["pre"])


def _main(args: list[str]) -> int:
    when = args[0] if len(args) == 1 else ""
    if when not in ("pre", "post"):
        print(USAGE, file=sys.stderr)
        return 2
    owner = os.getppid()
    argv = command_of(owner)

    def commit(helper_exit: float | None = None, *, helper: bool = False) -> int:
        return commit_hook(
            root="/",
            plugin=PLUGIN,
            manager=PLUGIN,
            argv=argv,
            owner_pid=owner,
            database=PacmanDatabase,
            helper=helper,
            helper_exit=helper_exit,
        )

    if when == "pre":
        targets = [] if sys.stdin is None or sys.stdin.isatty() else read_targets(sys.stdin)
        return begin_hook(
            root="/",
            plugin=PLUGIN,
            manager=PLUGIN,
            argv=argv,
            owner_pid=owner,
            database=PacmanDatabase,
            targets=targets,
            name=layer_name(argv),  # without --noconfirm and the like; ASH_NAME wins
            # This process stays to seal the layer when the post hook asks, and to describe
            # it once pacman is done: the post hook is shell only.
            commit=lambda exited: commit(exited, helper=True),
        )
    return commit()  # the post hook's slow way: nobody stayed behind (see ashcore/linger.py)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
