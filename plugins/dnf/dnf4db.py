"""The database face of the dnf4 plugin: the installed set as dnf's own sack holds it.

dnf loaded the root's rpmdb into its sack when it started and does not reload it after the
transaction, so the set after a transaction that succeeded is the sack's with the
transaction applied; a failed one (the exit handler) is read from the rpmdb instead.
"""

from __future__ import annotations

import os
from typing import Any

from .actions import Entry, apply_transaction
from .rpmdb import RpmDatabase, installed_set


def transaction_items(base: Any) -> list[dict[str, str]]:
    """dnf's transaction as the actions plugin would list it: `I` what comes, `E` what goes."""
    import dnf.transaction
    import libdnf.transaction

    inbound = set(dnf.transaction.FORWARD_ACTIONS)
    outbound = {
        *dnf.transaction.BACKWARD_ACTIONS,
        libdnf.transaction.TransactionItemAction_REINSTALLED,
    }
    items = []
    for tsi in base.transaction or ():
        letter = "I" if tsi.action in inbound else "E" if tsi.action in outbound else "?"
        pkg = tsi.pkg
        items.append({"name": pkg.name, "arch": pkg.arch, "evr": pkg.evr, "action": letter})
    return items


class Dnf4Database(RpmDatabase):
    """dnf's view of the root it works on (`root`); any other root, such as a layer's
    snapshot (the set before a run, `describe.before_of`), is read from its rpmdb."""

    def __init__(self, base: Any, *, after_transaction: bool, root: str = "/") -> None:
        self.base = base
        self.after_transaction = after_transaction
        self.root = os.path.abspath(root)

    def read_installed(self, root: str) -> dict[str, str]:
        if os.path.abspath(root) != self.root:
            return super().read_installed(root)
        import hawkey

        sack = self.base.sack
        if sack is None:
            return super().read_installed(root)
        entries: list[Entry] = [
            (p.name, p.arch, p.evr) for p in sack.query(flags=hawkey.IGNORE_EXCLUDES).installed()
        ]
        if self.after_transaction:
            entries = apply_transaction(entries, transaction_items(self.base))
        return installed_set(entries, self.compare_versions)
