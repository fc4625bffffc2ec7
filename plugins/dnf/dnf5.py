"""The dnf5 hook face, run by libdnf5's built-in actions plugin (`files/ashlayers.actions`).

    python3 -I -m ashplugins.dnf.dnf5 begin|commit INSTALLROOT PID HISTORY_DIR

The actions plugin is part of libdnf5 and enabled by default, so a stock `dnf5 install`
(and every other libdnf5 front end) runs it with no environment variable set. It forks the
command straight from the manager's process: PID (`${pid}`) is the owner of the transaction.
`begin` runs in the actions plugin's json mode and asks it for the transaction's packages;
`commit` reads how the transaction ended from dnf5's history (a failed scriptlet: failed).
"""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO

from ashplugins.dnf.command import PLUGIN_NAME, plugin_disabled, read_cmdline
from ashplugins.dnf.rpmdb import RpmDatabase

from ashcore.hook import begin_hook, commit_hook

PLUGIN = "dnf"
MANAGER = "dnf5"
USAGE = "usage: python3 -m ashplugins.dnf.dnf5 begin|commit INSTALLROOT PID HISTORY_DIR"


def transaction_names(out_fd: int = 1, reply: BinaryIO | None = None) -> list[str]:
    """The names of the transaction's packages, asked of the actions plugin (json mode).

    The request goes to stdout and the one-line reply comes on stdin; [] when that fails.
    """
    request = {"op": "get", "domain": "trans_packages", "args": {"output": ["name"]}}
    try:
        os.write(out_fd, json.dumps(request).encode() + b"\n")
        answer = json.loads((reply or sys.stdin.buffer).readline() or b"{}")
        packages = answer["return"]["trans_packages"] if answer.get("status") == "OK" else []
        return sorted({str(p["name"]) for p in packages})
    except (OSError, ValueError, KeyError, TypeError):
        return []


def main(args: list[str]) -> int:
    if len(args) != 4 or args[0] not in ("begin", "commit") or not args[2].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    step, root, pid, history_dir = args[0], args[1] or "/", int(args[2]), args[3]
    argv = read_cmdline(pid) or [MANAGER]
    if plugin_disabled(argv, PLUGIN_NAME):
        return 0
    if step == "begin":
        return begin_hook(
            root=root,
            plugin=PLUGIN,
            manager=MANAGER,
            argv=argv,
            owner_pid=pid,
            database=RpmDatabase,
            targets=transaction_names(),
        )
    from ashplugins.dnf.history import last_transaction_failed

    return commit_hook(
        root=root,
        plugin=PLUGIN,
        manager=MANAGER,
        argv=argv,
        owner_pid=pid,
        database=RpmDatabase,
        failed=last_transaction_failed(root, history_dir),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
