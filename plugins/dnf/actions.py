"""The json channel of libdnf5's actions plugin: requests on stdout, one-line replies on stdin.

An action started with `mode=json` can ask the manager's process about the transaction
(`trans_packages`) and about the packages libdnf5 has loaded (`packages`). Nothing else may
be written to stdout while the channel is open.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # no typing import on the hot path
if TYPE_CHECKING:
    from typing import Any, BinaryIO

PACKAGE_FIELDS = ["name", "arch", "evr"]
INBOUND = frozenset("IUDR")  # install, upgrade, downgrade, reinstall
OUTBOUND = frozenset("EO")  # erase, replaced (the old side of an upgrade, downgrade, reinstall)

Entry = tuple[str, str, str]
"""(name, arch, evr) of one installed package instance."""


class ActionsChannel:
    def __init__(self, out_fd: int = 1, replies: BinaryIO | None = None) -> None:
        self.out_fd = out_fd
        self.replies = replies if replies is not None else sys.stdin.buffer
        self._transaction: list[dict[str, str]] | None = None

    def ask(self, domain: str, args: dict[str, Any]) -> list[dict[str, str]] | None:
        """The list the plugin returns for a `get` of domain, or None when there is no answer."""
        import json  # only when asked: 5 ms of a hook's time

        request = {"op": "get", "domain": domain, "args": args}
        try:
            os.write(self.out_fd, json.dumps(request).encode() + b"\n")
            reply = json.loads(self.replies.readline() or b"{}")
            if reply.get("status") != "OK":
                return None
            items = reply["return"][domain]
            return [{str(k): str(v) for k, v in item.items()} for item in items]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def stop(self, message: str) -> None:
        """Ask the manager to stop (libdnf5 throws a stop request; no reply comes)."""
        import json

        request = {"op": "stop", "args": {"message": message}}
        try:
            os.write(self.out_fd, json.dumps(request).encode() + b"\n")
        except OSError:
            return  # the manager is gone or stopped listening

    def transaction(self) -> list[dict[str, str]] | None:
        """The transaction's packages: name, arch, evr and action letter (asked once)."""
        if self._transaction is None:
            self._transaction = self.ask("trans_packages", {"output": [*PACKAGE_FIELDS, "action"]})
        return self._transaction

    def installed(self) -> list[Entry] | None:
        """The installed packages as libdnf5 loaded them when the manager started."""
        found = self.ask(
            "packages",
            {
                "output": PACKAGE_FIELDS,
                "filters": [{"key": "installed"}],
                "params": [{"key": "IGNORE_EXCLUDES"}],
            },
        )
        return None if found is None else [(p["name"], p["arch"], p["evr"]) for p in found]


def apply_transaction(installed: list[Entry], transaction: list[dict[str, str]]) -> list[Entry]:
    """The installed instances after the transaction: outbound ones removed, inbound added."""
    after = list(installed)
    for item in transaction:
        entry = (item["name"], item["arch"], item["evr"])
        if item["action"] in OUTBOUND and entry in after:
            after.remove(entry)
    for item in transaction:
        if item["action"] in INBOUND:
            after.append((item["name"], item["arch"], item["evr"]))
    return after


def transaction_order(transaction: list[dict[str, str]]) -> dict[tuple[str, str], int]:
    """libdnf5's own verdict on the versions a transaction swaps: (old, new) -> -1 or 1."""
    order: dict[tuple[str, str], int] = {}
    for new in transaction:
        sign = {"U": -1, "D": 1}.get(new["action"])
        if sign is None:
            continue
        for old in transaction:
            if old["action"] == "O" and (old["name"], old["arch"]) == (new["name"], new["arch"]):
                order[(old["evr"], new["evr"])] = sign
                order[(new["evr"], old["evr"])] = -sign
    return order
