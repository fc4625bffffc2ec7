"""dnf4's helper: describes the layer of a dnf4 transaction once dnf is done with it.

The dnf4 plugin runs inside dnf's process, which runs threads and holds the rpmdb open: it
cannot fork the helper as the other hooks do (ashcore/linger.py). Its `transaction` hook starts
this module in a fresh interpreter instead (`ashcore.hook.hand_over_hook`):

    python3 -I -S -c ... ROOT PID OWNER ARGV...

with a pipe from dnf as stdin. Once dnf closes it (dnf exited, or it starts another
transaction), at most linger.SETTLE seconds later, the helper describes the layer the plugin
sealed in dnf's process: the rpmdb's set in the sealed snapshot, the parent layer's before,
the transaction a success (dnf4 calls `transaction` only then).
"""

from __future__ import annotations

import sys

PLUGIN = "dnf"
MANAGER = "dnf4"


def command(root: str, owner_pid: int, owner: str, argv: list[str]) -> list[str]:
    """How the plugin starts this module: the interpreter and module path of dnf's own."""
    code = (
        "import sys\n"
        f"sys.path[:0] = {[p for p in sys.path if p]!r}\n"
        "from ashplugins.dnf.dnf4helper import main\n"
        "from ashcore.hook import leave\n"
        "leave(main(sys.argv[1:]))\n"
    )
    return [sys.executable, "-I", "-S", "-c", code, root, str(owner_pid), owner, *argv]


def main(args: list[str]) -> int:
    root, pid, owner, *argv = args
    from ashcore.hook import commit_hook
    from ashcore.linger import wait_for_release

    from .rpmdb import RpmDatabase

    exited = wait_for_release()
    code = commit_hook(
        root=root,
        plugin=PLUGIN,
        manager=MANAGER,
        argv=argv,
        owner_pid=int(pid),
        owner=owner,
        database=RpmDatabase,
        failed=False,
        helper=True,
        helper_exit=exited,
    )
    if exited is None:
        # dnf still ran when the layer was described: it writes its history after the
        # `transaction` hook, and exits seconds later. Its writes until it exits are its own.
        _late(root, owner)
    return code


def _late(root: str, owner: str) -> None:
    from ashcore.hook import say
    from ashcore.lifecycle import extend_late_until
    from ashcore.linger import LATE_WAIT, wait_for_release
    from ashcore.target import Target

    exited = wait_for_release(LATE_WAIT)
    if exited is None:
        return  # quiet that long: its later writes are drift
    try:
        extend_late_until(Target(root), owner, exited)
    except Exception as e:  # nothing of the layer is at stake
        say(f"cannot record when dnf exited: {e}")
