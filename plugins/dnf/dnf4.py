"""The dnf4 hook face: a `dnf.Plugin`, loaded by dnf from its plugin path (`files/ashlayers.py`).

It runs inside dnf's own process: that process owns the transaction. `pre_transaction` begins
it (dnf's sack gives the targets); `transaction` seals the layer in place, before dnf goes
on, and hands its description to a helper process (`dnf4helper.py`) that runs once dnf is
done, or describes it in place when no helper can start. dnf4 does not call `transaction`
when the rpm transaction fails (a failing scriptlet): an exit handler then records the run as
failed, with the set read from the rpmdb. dnf's own switches apply: `enabled=0` in
ashlayers.conf, `--disableplugin=ashlayers`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import dnf
import dnf.exceptions

from .command import PLUGIN_NAME, layer_name
from .dnf4db import Dnf4Database
from .dnf4helper import MANAGER, PLUGIN, command
from .rpmdb import RpmDatabase


class _ToDnfLogger(logging.Handler):
    """Hands the core's records to dnf's logger, so they show (and are kept) as dnf's own."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("dnf").handle(record)


def _route_logging() -> None:
    level = logging.DEBUG if os.environ.get("ASH_DEBUG") else logging.INFO
    for name in ("ashlayers", "ashcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _ToDnfLogger) for h in logger.handlers):
            logger.addHandler(_ToDnfLogger())
        logger.setLevel(level)
        logger.propagate = False


if TYPE_CHECKING:
    from ashcore.hook import Handover

_helpers: list[Handover] = []  # (process, end of its stdin) of this process's transactions


class AshLayers(dnf.Plugin):  # type: ignore[misc]
    name = PLUGIN_NAME

    def __init__(self, base: Any, cli: Any) -> None:
        super().__init__(base, cli)
        self._open = False

    def _common(self) -> dict[str, Any]:
        return {
            "root": self.base.conf.installroot or "/",
            "plugin": PLUGIN,
            "manager": MANAGER,
            "argv": list(sys.argv) or ["dnf"],
            "owner_pid": os.getpid(),
        }

    def pre_transaction(self) -> None:
        _route_logging()
        self._release_helper()
        targets = sorted({item.name for item in self.base.transaction})
        from ashcore.hook import begin_hook

        database = Dnf4Database(self.base, after_transaction=False, root=self._common()["root"])
        rc = begin_hook(
            **self._common(),
            database=lambda: database,
            targets=targets,
            name=layer_name(sys.argv),
            reopen=False,  # dnf used as a library may run several transactions in one process
        )
        if rc != 0:
            raise dnf.exceptions.Error("ashlayers: no layer could be made; nothing was changed")
        self._open = True
        atexit.register(self._ended_without_transaction_hook)

    def transaction(self) -> None:
        if not self._open:
            return
        from ashcore.hook import hand_over_hook, seal_hook
        from ashcore.process import owner_of

        common = self._common()
        pid = common["owner_pid"]
        # Sealed here, before dnf goes on: nothing done after dnf returns is in the layer.
        if not seal_hook(root=common["root"], owner_pid=pid):
            self._commit(failed=False)  # not sealed: make the layer here
            return
        argv = command(common["root"], pid, owner_of(pid), common["argv"])
        helper = hand_over_hook(root=common["root"], owner_pid=pid, command=argv)
        if helper is None:
            self._commit(failed=False)  # no helper: make the layer here
            return
        _helpers.append(helper)
        self._open = False
        atexit.unregister(self._ended_without_transaction_hook)

    def _release_helper(self) -> None:
        """Another transaction in the same process (dnf as a library, with this Base or a new
        one): the previous one's layer first."""
        while _helpers:
            process, stdin = _helpers.pop()
            os.close(stdin)
            process.wait()

    def _ended_without_transaction_hook(self) -> None:
        self._commit(failed=True)

    def _commit(self, *, failed: bool) -> None:
        if not self._open:
            return
        self._open = False
        atexit.unregister(self._ended_without_transaction_hook)
        from ashcore.hook import commit_hook

        root = self._common()["root"]
        database = (
            RpmDatabase() if failed else Dnf4Database(self.base, after_transaction=True, root=root)
        )
        commit_hook(**self._common(), database=lambda: database, failed=failed)
