"""The dnf5 hook face, run by libdnf5's built-in actions plugin (`files/ashlayers.actions`).

    /usr/libexec/ashlayers/dnf5-hook begin|commit INSTALLROOT PID HISTORY_DIR

The actions plugin is part of libdnf5 and enabled by default, so a stock `dnf5 install`
(and every other libdnf5 front end) runs it with no environment variable set. It forks the
command straight from the manager's process: PID (`${pid}`) is the owner of the transaction.
Both steps run in the plugin's json mode: they ask libdnf5 for the transaction and the
installed packages (`libdnf5db.py`). `commit` reads how the transaction ended from dnf5's
history: a failed scriptlet makes a failed layer. A begin that fails stops dnf5 with the
channel's `stop` (the action is not `raise_error=1`: a leftover hook never breaks dnf5).
"""

from __future__ import annotations

import sys

from ashcore.hook import begin_hook, commit_hook, guarded

from .actions import ActionsChannel
from .command import PLUGIN_NAME, layer_name, plugin_disabled, read_cmdline
from .libdnf5db import Dnf5Database

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .rpmdb import RpmDatabase

PLUGIN = "dnf"
MANAGER = "dnf5"
USAGE = "usage: python3 -m ashplugins.dnf.dnf5 begin|commit INSTALLROOT PID HISTORY_DIR"


def main(args: list[str], channel: ActionsChannel | None = None) -> int:
    """The hook's entry point: an error of the hook's own is one line (ashcore.hook.guarded)."""
    root = args[1] if len(args) == 4 and args[1] else "/"
    begin = args[:1] == ["begin"]
    channel = channel or ActionsChannel()
    rc = guarded(lambda: _main(args, channel), before=begin, root=root)
    if begin and rc == 1:  # dnf5 runs its actions without raise_error: ask it to stop
        channel.stop("ashlayers: no layer could be made; stopped before any change")
    return rc


def _main(args: list[str], channel: ActionsChannel | None = None) -> int:
    if len(args) != 4 or args[0] not in ("begin", "commit") or not args[2].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    step, root, pid, history_dir = args[0], args[1] or "/", int(args[2]), args[3]
    argv = read_cmdline(pid) or [MANAGER]
    if plugin_disabled(argv, PLUGIN_NAME):
        return 0
    assert channel is not None
    if step == "begin":
        # The transaction's packages only when a skip_packages pattern needs them: the reply
        # is JSON, and importing json costs a hook 5 ms.
        from ashcore.config import load_hook_config

        wanted = load_hook_config(root, PLUGIN).skip_packages
        transaction = (channel.transaction() or []) if wanted else []
        rc = begin_hook(
            root=root,
            plugin=PLUGIN,
            manager=MANAGER,
            argv=argv,
            owner_pid=pid,
            database=lambda: Dnf5Database(channel, after_transaction=False, root=root),
            targets=sorted({item["name"] for item in transaction}),
            name=layer_name(argv),
            reopen=False,  # one libdnf5 process (a daemon, a script) may run many transactions
            # This process stays as the helper: it seals the layer when the post action
            # asks and describes it once dnf5 is done (ashcore/linger.py), reading the rpmdb
            # of the sealed snapshot, as the channel is gone.
            commit=lambda exited: _commit(root, argv, pid, history_dir, None, (exited,)),
        )
        return rc
    return _commit(root, argv, pid, history_dir, channel)


def _commit(
    root: str,
    argv: list[str],
    pid: int,
    history_dir: str,
    channel: ActionsChannel | None,
    helper: tuple[float | None] | None = None,
) -> int:
    """The post action's slow way (`channel`), or the helper's (`helper`: when dnf5 exited)."""
    from .history import last_transaction_failed
    from .rpmdb import RpmDatabase as _RpmDatabase

    failed = last_transaction_failed(root, history_dir)
    database: Callable[[], Dnf5Database | RpmDatabase] = _RpmDatabase
    if channel is not None and not failed:  # libdnf5's own view, while it is listening
        live = channel
        database = lambda: Dnf5Database(live, after_transaction=True, root=root)  # noqa: E731
    return commit_hook(
        root=root,
        plugin=PLUGIN,
        manager=MANAGER,
        argv=argv,
        owner_pid=pid,
        database=database,
        failed=failed,
        helper=helper is not None,
        helper_exit=helper[0] if helper is not None else None,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
