"""One package operation: begin (pre hook), seal (post hook), and the call that describes.

begin: take the store lock; close a transaction whose owner died (ashcore/recovery.py); keep
drift, found through a read-only snapshot of the root (the probe), as a layer of its own;
record a pending transaction. seal: snapshot the root read-only as the pending layer
(`<id>.partial`) before the manager goes on. commit: describe it (ashcore/describe.py): the
package delta from the sealed snapshot and its parent, the record; may run after the
manager exited, in its helper, or in recovery.

A transaction belongs to an *owner*, the package manager's process. A second begin by the
same owner, or by one of its descendants (dpkg under apt), joins it instead of nesting (and
voids its seal: the next post hook seals again). A begin by the owner of the deployment's
newest layer reopens that layer, so that one apt run that calls dpkg twice is still one layer.

Every step is ordered so that a kill at any line leaves a state `recover` finishes: the
record is inserted `pending` first; the snapshot is made under `<id>.partial`, marked sealed,
and renamed; the manifest (with the snapshot's uuid) is written; then the record is finalized.
"""

from __future__ import annotations

import os
import time

from ashcore.clock import ctime_now
from ashcore.config import HookConfig, load_hook_config
from ashcore.drift import capture_drift, discard_early, sweep_probes
from ashcore.errors import StoreError
from ashcore.log import logger
from ashcore.model import Layer, Origin, PackageDelta, Seal, reads_files
from ashcore.naming import auto_command, auto_name, check_name, matches_any
from ashcore.ondisk import read_json
from ashcore.process import ancestors, pid_of, started_at
from ashcore.store import Store
from ashcore.storedb import PAUSE_FIRST, PAUSE_MAX, full, no_space
from ashcore.target import Target
from ashcore.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ashcore.model import PackageDatabase

log = logger(__name__)


class Outcome:
    """What a begin did (constants; not an enum: `enum` costs every hook 1.5 ms to import)."""

    STARTED = "started"
    JOINED = "joined"  # a transaction of this owner or of an ancestor is already open
    SKIPPED = "skipped"


class Operation(Value):
    __slots__ = ("argv", "manager", "name", "origin", "owner", "reopen", "targets")
    origin: Origin  # where its layer comes from; /etc/ash/hooks.d/<origin.config>.toml applies
    manager: str | None  # what the layer records: apt, dpkg, dnf5, dnf4, pacman
    argv: tuple[str, ...]
    owner: str  # process.owner_of(the manager's pid)
    targets: tuple[str, ...]
    name: str | None  # the user's name for the layer (ASH_NAME)
    reopen: bool  # may a later begin of the same owner extend its layer?

    def __init__(
        self,
        origin: Origin | str,
        manager: str | None,
        argv: tuple[str, ...],
        owner: str,
        targets: tuple[str, ...] = (),
        name: str | None = None,
        reopen: bool = True,
    ) -> None:
        # A plugin names itself by its text (`Origin.from_text`): "apt", "run".
        self._init(
            origin=origin if isinstance(origin, Origin) else Origin.from_text(origin),
            manager=manager,
            argv=argv,
            owner=owner,
            targets=targets,
            name=name,
            reopen=reopen,
        )


def skip_reason(op: Operation, hooks: HookConfig) -> str | None:
    if os.environ.get("ASH_SKIP", "") not in ("", "0"):
        return "ASH_SKIP is set"
    if not hooks.enabled:
        return f"disabled in /etc/ash/hooks.d/{op.origin.config}.toml"
    for pattern in hooks.skip_packages:
        if matches_any(pattern, op.targets):
            return f"a target matches skip_packages {pattern!r}"
    for word in hooks.skip_commands:
        if word in op.argv[1:]:
            return f"the command matches skip_commands {word!r}"
    return None


# -- begin -----------------------------------------------------------------------------------
def begin(target: Target, op: Operation, database: PackageDatabase | None) -> str:
    hooks = load_hook_config(target.root, op.origin.config)
    reason = skip_reason(op, hooks)
    if reason:
        log.info("ashlayers: no layer for this run: %s", reason)
        return Outcome.SKIPPED
    name = check_name(op.name) if op.name is not None else auto_name(op.argv)
    store = target.store
    deadline = time.monotonic() + target.config.lock_timeout
    pause = PAUSE_FIRST
    while True:
        with store.locked(target.config.lock_timeout):
            pending = store.pending()
            if pending is None:
                _start(target, op, database, name)
                return Outcome.STARTED
            if pending["owner"] == op.owner:
                # The owner runs the manager again (a front end's second dpkg run): what was
                # sealed is no longer its last state; the next post hook seals again.
                if pending["sealed"] is not None:
                    store.mark_sealed(pending["id"], None)
                return Outcome.JOINED
            # Another transaction is open, or was left by a crash: rare, so recovery's room
            # is imported only then, off the common begin's path.
            from ashcore.recovery import database_for, recover, running

            if not running(target, pending):
                same = pending["origin"] == op.origin
                recover(
                    target,
                    pending,
                    database if same else database_for(target, pending["origin"]),
                )
                _start(target, op, database, name)
                return Outcome.STARTED
            if pid_of(pending["owner"]) in ancestors(os.getpid()):
                return Outcome.JOINED
            busy = f"{pending['command']} (pid {pending['owner'].partition(':')[0]})"
        discard_early(target)  # taken before that operation's end: stale
        if time.monotonic() > deadline:
            raise StoreError(
                f"another package operation is still running: {busy}",
                hint="wait for it to finish, or set ASH_SKIP=1 to run without a layer",
            )
        time.sleep(pause)
        pause = min(pause * 2, PAUSE_MAX)


def _start(target: Target, op: Operation, database: PackageDatabase | None, name: str) -> None:
    store = target.store
    if full(store.path):  # before the probe: a failed begin would hold what a user deletes
        raise no_space(store.path)
    dep = target.deployment()
    head = capture_drift(target, dep, own_since=started_at(op.owner))
    if head is None and store.has_layers_on_disk():
        # Setup made the base layer the head: a deployment without one, in a store that has
        # layers, means the database lost its records. A layer now would have no parent.
        raise StoreError(
            f"the layer database in {store.path} does not know this root's layer, though"
            " layers are on disk (was ash.db lost or put back from a copy?)",
            hint="run `ashctl doctor --repair` to rebuild it from the manifests",
        )
    if head is not None and database is not None and op.reopen:
        owner, origin = store.layer_owner(head)
        if owner == op.owner and origin == op.origin:
            before = _before_of(store, head)
            if before is not None:
                store.reopen(head, owner=op.owner, before=before)
                log.debug("reopened layer %d for the same %s run", head, op.manager)
                return
    # The deployment is its head layer now, drift kept (changes to the managers' own
    # databases aside). A database face that reads files reads the set before from that
    # snapshot once the run is over, off the manager's time (`before_of`), when the files it
    # reads are the snapshot's; else, and for the others, it reads the set now.
    before = None
    if database is not None and not (
        head is not None and reads_files(database) and _state_kept(target, head, database)
    ):
        before = database.read_installed(target.root)
    store.insert_pending(
        name=name,
        parent=head,
        manager=op.manager,
        origin=op.origin,
        command=auto_command(op.argv),
        owner=op.owner,
        deployment=dep.uuid,
        before=before,
    )


def _state_kept(target: Target, head: int, database: Any) -> bool:
    """Whether the files the database face reads are in the deployment as in the head
    layer's snapshot. Two lstats each as a rule: a snapshot keeps a file's inode number and
    times, so equal ones mean no change since; else the contents (a folder: its names) tell."""
    layer = target.store.layer_path(head)
    for rel in database.state_paths(target.root):
        a, b = os.path.join(layer, rel), os.path.join(target.root, rel)
        try:
            sa = os.lstat(a)
        except FileNotFoundError:
            sa = None
        try:
            sb = os.lstat(b)
        except FileNotFoundError:
            sb = None
        if sa is None or sb is None:
            if sa is not sb:
                return False
            continue
        if (sa.st_ino, sa.st_size, sa.st_mtime_ns, sa.st_ctime_ns, sa.st_mode) == (
            sb.st_ino,
            sb.st_size,
            sb.st_mtime_ns,
            sb.st_ctime_ns,
            sb.st_mode,
        ):
            continue
        if os.path.isdir(b) and not os.path.islink(b):
            if not os.path.isdir(a) or set(os.listdir(a)) != set(os.listdir(b)):
                return False
        else:
            from ashcore.entries import same_entry  # only when a file did change

            if not same_entry(a, b):
                return False
    return True


def _before_of(store: Store, layer_id: int) -> dict[str, str] | None:
    manifest = read_json(store.manifest_path(layer_id))
    if not manifest or not isinstance(manifest.get("installed"), dict):
        return None
    return PackageDelta.from_json(manifest.get("packages")).revert(manifest["installed"])


# -- seal and describe -----------------------------------------------------------------------
def seal(target: Target, op: Operation, *, failed: bool | None = None) -> tuple[int, str] | None:
    """The post hook's step, before the manager goes on: snapshot the deployment read-only
    as the owner's pending layer (`<id>.partial`). Nothing done after the manager regains
    control can be in it. Describing it (`commit`) may come later, from that snapshot and
    its parent's alone. Returns the layer's id and name; None when the owner has no
    transaction (skipped, joined)."""
    store = target.store
    with store.locked(target.config.lock_timeout):
        pending = store.pending()
        if pending is None or pending["owner"] != op.owner:
            return None
        _seal(target, pending, failed)
    return int(pending["id"]), str(pending["name"])


def _seal(target: Target, pending: Any, failed: bool | None) -> Seal:
    store, fs = target.store, target.fs
    layer_id = pending["id"]
    partial = store.partial_path(layer_id)
    if pending["sealed"] is not None:  # sealed before: that state is superseded
        store.mark_sealed(layer_id, None)
    if os.path.lexists(partial):
        fs.delete(partial)
    when = ctime_now()
    # Lock files stay in it for now: leaving them out means a writable snapshot made
    # read-only after, a second transaction commit the manager would wait for (16 ms after a
    # pacman install). `describe` removes them, once the manager is done.
    fs.snapshot(target.root, partial, read_only=True)
    # Every write the snapshot holds is in its transaction or before; any later one has a
    # later transid and a ctime at least `when`.
    sealed = Seal((fs.info(partial).otransid, when), failed)
    store.mark_sealed(layer_id, sealed)
    return sealed


def commit(
    target: Target,
    op: Operation,
    database: PackageDatabase | None,
    *,
    failed: bool | None = False,
    sealed_only: bool = False,
    late_until: float | None = None,
) -> Layer | None:
    """End the owner's transaction with a layer (None when it changed nothing).

    The layer is the state its post hook sealed; a post hook that finds no seal (no helper
    did it) seals now. `sealed_only`: the helper's call, once the manager exited or went
    quiet: an unsealed transaction (joined again, or killed) is left as it is. `late_until`:
    when the manager exited; its writes up to then are its own (drift_since_head).

    failed=None lets the seal's verdict, or else the database face, judge from the sets before
    and after, with its optional method `failed(before, after) -> bool` (a manager that does
    not tell its hooks how the transaction ended: apt, dpkg).
    """
    # Describing runs in the helper, once the manager is done: its room is imported there.
    from ashcore.describe import describe, sealed_of

    store = target.store
    with store.locked(target.config.lock_timeout):
        pending = store.pending()
        if pending is None or pending["owner"] != op.owner:
            log.debug("no transaction of %s to commit", op.owner)
            return None
        sealed = sealed_of(target, pending)
        if sealed is None:
            if sealed_only:
                return None
            sealed = _seal(target, pending, failed)
        layer = describe(target, pending, sealed, database, failed, late_until)
        sweep_probes(target)
        if sealed_only and layer is not None:  # the helper: off the manager's time
            from ashcore.sets import complete

            complete(target, layer.id)
        store.bound_wal()
    return layer


def abandon(target: Target, op: Operation) -> None:
    """End the owner's transaction without a layer: its command never started (`ashctl run`
    of a command not found), so none of it is in the root. Drift the begin kept stays."""
    store = target.store
    with store.locked(target.config.lock_timeout):
        pending = store.pending()
        if pending is None or pending["owner"] != op.owner:
            return
        # The record first: a kill after it leaves at most a probe, which the next run or
        # `doctor` sweeps; a kill before it, a transaction recovery closes as interrupted.
        store.delete_row(pending["id"])
        partial = store.partial_path(pending["id"])
        if os.path.lexists(partial):
            target.fs.delete(partial)
        sweep_probes(target)


def extend_late_until(target: Target, owner: str, when: float) -> None:
    """The owner of the deployment's head layer exited at `when`, after that layer was
    described: its writes to its own databases until then are its own, not drift."""
    store = target.store
    with store.locked(target.config.lock_timeout):
        dep = target.deployment()
        head, _ = store.head(dep.uuid)
        if head is not None and store.layer_owner(head)[0] == owner:
            store.set_late_until(dep.uuid, when)
