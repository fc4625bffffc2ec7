"""The database face of the dnf5 hooks: the installed set as libdnf5 itself sees it.

libdnf5 has the root's rpmdb loaded already; the hook asks for it over the actions plugin's
json channel instead of loading rpm's bindings and reading every header again. At
`post_transaction` libdnf5's view is still the one from before the transaction, so the set
after it is that view with the transaction applied (the transaction succeeded: dnf5's history
says so; a failed one is read from the rpmdb with `RpmDatabase`).
"""

from __future__ import annotations

import os

from .actions import ActionsChannel, apply_transaction, transaction_order
from .rpmdb import RpmDatabase, installed_set


class Dnf5Database:
    """libdnf5's view of the root it works on (`root`); any other root, such as a layer's
    snapshot (the set before a run, `describe.before_of`), is read from its rpmdb."""

    def __init__(
        self, channel: ActionsChannel, *, after_transaction: bool, root: str = "/"
    ) -> None:
        self.channel = channel
        self.after_transaction = after_transaction
        self.root = os.path.abspath(root)
        self._rpm: RpmDatabase | None = None

    def _fallback(self) -> RpmDatabase:
        if self._rpm is None:
            self._rpm = RpmDatabase()
        return self._rpm

    def state_paths(self, root: str) -> tuple[str, ...]:
        return self._fallback().state_paths(root)

    def read_installed(self, root: str) -> dict[str, str]:
        if os.path.abspath(root) != self.root:
            return self._fallback().read_installed(root)
        entries = self.channel.installed()
        transaction = self.channel.transaction() if self.after_transaction else []
        if entries is None or transaction is None:
            return self._fallback().read_installed(root)
        if self.after_transaction:
            entries = apply_transaction(entries, transaction)
        return installed_set(entries, self.compare_versions)

    def compare_versions(self, a: str, b: str) -> int:
        known = transaction_order(self.channel.transaction() or [])
        if (a, b) in known:
            return known[(a, b)]
        if a == b:
            return 0
        return self._fallback().compare_versions(a, b)
