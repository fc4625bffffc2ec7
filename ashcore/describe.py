"""describe: a sealed pending layer becomes a layer.

Its package delta comes from the sealed snapshot and its parent's (or the set the begin
read), its status from the hook's verdict or the database face's, and its record and
manifest are written. It needs nothing of the live root, so that a run whose helper died is
described the same by recovery; a run that changed nothing leaves no layer.
"""

from __future__ import annotations

import os
import time

from ashcore.config import load_hook_config
from ashcore.drift import changes, drop_lock_files, manager_state
from ashcore.layers import make_layer
from ashcore.log import logger
from ashcore.model import Layer, Origin, PackageDelta, Seal, Status, reads_files
from ashcore.naming import matches_any
from ashcore.ondisk import loads
from ashcore.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ashcore.model import PackageDatabase

log = logger(__name__)


def sealed_of(target: Target, pending: Any) -> Seal | None:
    """The pending layer's seal, if its snapshot is in place. A sealed snapshot is made
    read-only at once; one found writable was being rid of its lock files by `describe`
    when a kill came (`drop_lock_files`): that is finished here, the seal still holds."""
    sealed = Seal.from_text(pending["sealed"])
    partial = target.store.partial_path(pending["id"])
    if sealed is None or not os.path.lexists(partial):
        return None
    if not target.fs.is_read_only(partial):
        drop_lock_files(target, partial, writable=True)
    return sealed


def before_of(target: Target, pending: Any, database: PackageDatabase) -> dict[str, str] | None:
    """The installed set when the transaction began: recorded by the begin, or read from the
    parent layer's snapshot, which the begin made equal to the deployment (drift kept). None
    when neither is there (say, the parent's snapshot deleted by hand since)."""
    if pending["before"] is not None:
        before: dict[str, str] = loads(pending["before"])
        return before
    parent = pending["parent"]
    if parent is None or not reads_files(database):
        return None
    path = target.store.layer_path(parent)
    if not os.path.isdir(path):
        log.warning(
            "ashlayers: the snapshot of layer %d is gone: the package changes are unknown", parent
        )
        return None
    return database.read_installed(path)


def describe(
    target: Target,
    pending: Any,
    sealed: Seal,
    database: PackageDatabase | None,
    failed: bool | None,
    late_until: float | None,
) -> Layer | None:
    """Make a sealed pending layer a layer: its package delta from the sealed snapshot and
    the parent's (or the set the begin read), its status, its record. Needs nothing of the
    live root, so that a run whose helper died is described the same by recovery."""
    store, fs = target.store, target.fs
    layer_id = pending["id"]
    partial = store.partial_path(layer_id)
    drop_lock_files(target, partial)
    # A reopened layer (its old snapshot may be gone already, if a kill came mid-swap).
    amend = os.path.lexists(store.layer_path(layer_id)) or os.path.lexists(
        store.manifest_path(layer_id)
    )
    if failed is None:
        failed = sealed.failed
    after: dict[str, str] | None = None
    delta = PackageDelta()
    if database is not None:
        after = database.read_installed(partial)
        before = before_of(target, pending, database)
        if before is None:
            before = after
        delta = PackageDelta.between(before, after, database.compare_versions)
        if failed is None:
            judge = getattr(database, "failed", None)
            failed = bool(judge(before, after)) if judge is not None else False
        hooks = load_hook_config(target.root, pending["origin"].config)
        changed = [n for n, *_ in delta.added + delta.removed + delta.upgraded + delta.downgraded]
        # A reopened layer is kept whatever it touched: it is a layer already.
        skipped = [] if amend else [p for p in hooks.skip_packages if matches_any(p, changed)]
        if skipped or (
            not delta
            and not failed
            and not amend
            and not _files_changed(target, pending, manager_state)
        ):
            fs.delete(partial)
            store.drop_pending(layer_id)
            # What that run wrote to its own databases is its own, not drift.
            store.set_late_until(pending["deployment"], late_until or time.time())
            log.info(
                "ashlayers: no layer: %s",
                "no package changed" if not skipped else "skip_packages",
            )
            return None
    elif (
        pending["origin"].kind in (Origin.RUN, Origin.REPLAY)
        and not failed
        and not amend
        and not _files_changed(target, pending, _no_excuse)
    ):
        # `ashctl run`, which has no database face: the same rule on the files alone, and
        # every change counts, the managers' own databases too (`apt-mark hold` is one).
        fs.delete(partial)
        store.drop_pending(layer_id)
        log.info("ashlayers: nothing changed, no layer")
        return None
    return make_layer(
        target,
        pending,
        Status.FAILED if failed else Status.COMMITTED,
        delta,
        after,
        taken=sealed.checked,
        late_until=late_until,
    )


def _files_changed(target: Target, pending: Any, excused: Callable[[str], bool]) -> bool:
    """Whether a run that changed no package still changed files (a reinstall of changed
    files): then it gets a layer. A package run passes `manager_state`: what it wrote to its
    own databases alone (a reinstall's date) is its own writes, not drift (`set_late_until`)."""
    head, checked = target.store.head(pending["deployment"])
    if head is None or head != pending["parent"]:
        return True  # cannot tell: keep it
    partial = target.store.partial_path(pending["id"])
    layer = target.store.layer_path(head)
    return bool(changes(target, layer, partial, checked, excused, limit=1))


def _no_excuse(path: str) -> bool:
    return False
