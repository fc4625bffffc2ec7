"""Drift: changes to the deployment made outside any package operation, found through a
read-only snapshot of the root (the probe) and kept as a layer of its own before the next
operation, exactly (buffered writes and database-only changes included), so that every
layer's delta is one thing. Noise (a configurable list, and each manager's) is not drift.
"""

from __future__ import annotations

import os

from ashcore.btrfs import SubvolumeInfo
from ashcore.clock import ctime_now
from ashcore.layers import make_layer
from ashcore.log import logger
from ashcore.model import PackageDelta, Status
from ashcore.naming import NAMED, drift_name, matches_any
from ashcore.registry import in_state, made_at_start
from ashcore.store import (
    Checkpoint,
)
from ashcore.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


log = logger(__name__)


DRIFTED = "drifted"  # a drift layer's manifest: the paths it changed (NAMED + 1 at most)
NO_OWNER = "0:0"  # owns what the core does on its own (drift): never alive


# -- drift -----------------------------------------------------------------------------------
def noise_filter(
    paths: set[str], noise: tuple[str, ...], *, noise_folders: bool = True
) -> list[str]:
    """The paths that are not noise. With `noise_folders`, a folder above a noise path is
    noise too (one made to hold a log): right for a send stream, which names what a folder
    lost, not for the tree search, where a folder stands for its removed entries."""
    prefixes = tuple(p.strip("/") + "/" for p in noise if not any(c in p for c in "*?["))
    exact = {p.strip("/") for p in noise}
    globs = [p.strip("/") for p in noise if any(c in p for c in "*?[")]
    return sorted(
        p
        for p in paths
        if p not in exact
        and not p.startswith(prefixes)
        and not (noise_folders and any(n.startswith(p + "/") for n in exact))
        and not any(matches_any(g, [p]) for g in globs)
    )


def _same_folder(old: str, new: str, rel: str, noise: tuple[str, ...]) -> bool:
    """A folder the tree search named is unchanged if it holds the same entries (noise
    aside) with the same mode and owner: what changed was inside a noise path."""
    from ashcore.entries import same_entry

    a, b = os.path.join(old, rel), os.path.join(new, rel)
    if not (os.path.isdir(a) and os.path.isdir(b)) or os.path.islink(b):
        return False
    if rel and not same_entry(a, b):
        return False

    def entries(folder: str) -> set[str]:
        names = {os.path.join(rel, n) if rel else n for n in os.listdir(folder)}
        return set(noise_filter(names, noise, noise_folders=False))

    return entries(a) == entries(b)


def _take_probe(target: Target, checked: Checkpoint | None) -> tuple[str, Checkpoint]:
    """The probe, `layers/probe.<this pid>`, and the checkpoint it was taken at: the one the
    hook's launcher took early (ashcore/probe.py) when it is newer than `checked`, else a new
    one. The probe lives beside the layers: a read-only subvolume cannot move to another
    folder, and a drift layer is made of it.

    Nothing here renames or deletes a subvolume unless it must: either makes btrfs commit
    the whole transaction at the manager's next fsync (measured: ldconfig's fsync after a
    pacman install, 26 ms instead of 1), so probes are swept once the manager is done."""
    store, fs = target.store, target.fs
    from ashcore.probe import early_path, take_early

    early = take_early(store.layers_dir)
    if early is not None:
        path, when = early
        generation = fs.info(path).otransid if when >= 0 else 0
        if when >= 0 and fs.is_read_only(path) and (checked is None or generation > checked[0]):
            return path, (generation, when)
        fs.delete(path)  # older than the head's checkpoint, or than FRESH
    probe = early_path(store.layers_dir)
    if os.path.lexists(probe):  # left by a killed run of this pid (we hold the lock)
        fs.delete(probe)
    when = ctime_now()
    fs.snapshot(target.root, probe, read_only=True, drop=target.config.lock_files)
    return probe, (fs.info(probe).otransid, when)


def sweep_probes(target: Target) -> None:
    """Delete the probes of processes that are gone (a begin's, once its manager is done:
    the helper, after it describes; `ashctl`). A waiting begin's early probe is kept."""
    store, fs = target.store, target.fs
    for name in os.listdir(store.layers_dir):
        if not name.startswith("probe"):
            continue
        pid = name.partition(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}"):
            continue
        fs.delete(os.path.join(store.layers_dir, name))


def drop_lock_files(target: Target, snapshot: str, *, writable: bool = False) -> None:
    """Remove lock files from a read-only snapshot taken with them (a seal, the launcher's
    probe); `writable`: a kill left it writable halfway through this."""
    present = [p for p in target.config.lock_files if os.path.lexists(os.path.join(snapshot, p))]
    if present or writable:
        from ashcore.btrfs import unlink_inside

        target.fs.set_read_only(snapshot, False)
        for rel in present:
            unlink_inside(snapshot, rel)
        target.fs.set_read_only(snapshot, True)


def discard_early(target: Target) -> None:
    """Delete the probe the launcher took early, if the begin did not use it."""
    from ashcore.probe import take_early

    early = take_early(target.store.layers_dir)
    if early is not None:
        target.fs.delete(early[0])


OWN_MARGIN = 0.005  # s: ctime's clock is coarse (4 ms); a write at the start may read earlier


def manager_state(path: str) -> bool:
    """Whether `path` is in a manager's own database."""
    return in_state(path)


def changes(
    target: Target,
    head_path: str,
    snapshot: str,
    checked: Checkpoint | None,
    excused: Callable[[str], bool],
    *,
    limit: int | None = None,
) -> list[str]:
    """The paths (noise excluded) in which the read-only `snapshot` differs from the layer at
    `head_path`, leaving out those `excused` says are no change of interest.

    Fast path: btrfs's tree search names the inodes of `snapshot` written after `checked`;
    when they are all noise or excused, that is the answer. Else a send stream against the
    head, each path confirmed by comparing its entries, tells exactly.
    """
    fs = target.fs
    if not os.path.isdir(head_path):
        return ["(the layer's snapshot is missing)"]
    noise = target.config.noise + target.config.lock_files  # never in a layer
    if checked is not None:
        quick = fs.changed_since(snapshot, checked[0], checked[1])
        if quick is not None:
            candidates = [
                p
                for p in noise_filter(quick, noise, noise_folders=False)
                if not excused(p) and not _same_folder(head_path, snapshot, p, noise)
            ]
            if not candidates:
                return []
    from ashcore.entries import same_entry

    found: list[str] = []
    for p in noise_filter(fs.changed_paths(head_path, snapshot), noise):
        if excused(p) or same_entry(os.path.join(head_path, p), os.path.join(snapshot, p)):
            continue
        found.append(p)
        if limit is not None and len(found) >= limit:
            break  # enough to decide and to name (50,000 new files: not 50,000 compares)
    return found


def drift_since_head(
    target: Target,
    head: int,
    checked: Checkpoint | None,
    *,
    own_since: float | None = None,
    late_until: float | None = None,
    limit: int | None = None,
) -> tuple[list[str], Checkpoint, str]:
    """Changed paths (noise excluded) since the head layer, the checkpoint they were looked
    at, and the probe: the caller keeps it as a layer, or leaves it to `sweep_probes`.

    The probe, a read-only snapshot of the deployment, comes first: it holds every write made
    so far, buffered ones too (a filesystem commit does not write buffered file data, so an
    edit made a moment ago would not show in the generations), and it takes 1-2 ms.

    A write to a manager's own database (or a file its front end creates as it starts) is
    the manager's, not drift, when its ctime says a manager made it: at or after `own_since`
    (the manager that begins, as it started up: dnf's history, aptitude's states, the empty
    sources.list python-apt makes) or at or before `late_until` (the head's manager, after
    its last post hook and before it exited). Any other change to them (`apt-mark hold`,
    `rpm --justdb`, a hand edit) is drift.
    """
    store = target.store
    probe, now = _take_probe(target, checked)

    def own(path: str) -> bool:
        if not manager_state(path) and not made_at_start(path):
            return False
        ctime = _ctime(probe, path)
        if ctime is None:
            return False
        return (own_since is not None and ctime >= own_since - OWN_MARGIN) or (
            late_until is not None and ctime <= late_until
        )

    try:
        changed = changes(target, store.layer_path(head), probe, checked, own, limit=limit)
    except BaseException:
        _forget_probe(target, probe)
        raise
    return changed, now, probe


def _forget_probe(target: Target, probe: str) -> None:
    """Delete the probe of a begin that failed: it holds every file of the root, and what a
    user deletes to make room must not stay held until the next sweep (a full filesystem
    fails every begin, so none sweeps)."""
    from ashcore.errors import AshError

    try:
        if os.path.lexists(probe):
            target.fs.delete(probe)
    except (AshError, OSError) as e:
        log.debug("ashlayers: probe %s not deleted: %s", probe, e)


def _ctime(root: str, rel: str) -> float | None:
    """The ctime of `rel` under `root`, or of its nearest folder that exists (a removed file
    changed its folder)."""
    while True:
        try:
            return os.lstat(os.path.join(root, rel)).st_ctime
        except FileNotFoundError:
            if not rel:
                return None
            rel = os.path.dirname(rel)
        except OSError:
            return None


def capture_drift(
    target: Target, dep: SubvolumeInfo, *, own_since: float | None = None, strict: bool = False
) -> int | None:
    """Keep changes made since the deployment's layer as a drift layer; return the head.
    `own_since`: when the manager that begins started (see drift_since_head). `strict`:
    every change counts, the managers' own writes too (a rollback keeps the state it leaves
    unless it is the layer's, byte for byte)."""
    store = target.store
    head, checked, late_until = store.head_state(dep.uuid)
    if head is None:
        return None
    changed, now, probe = drift_since_head(
        target,
        head,
        checked,
        own_since=None if strict else own_since,
        late_until=None if strict else late_until,
        limit=NAMED + 1,  # enough to name the layer: its paths are in its snapshot
    )
    try:
        if not changed:
            store.set_checked(dep.uuid, now)
            return head
        pending: dict[str, Any] = {
            "name": drift_name(changed),
            "parent": head,
            "manager": None,
            "command": "changes made outside package operations",
            "plugin": None,
            "deployment": dep.uuid,
        }
        pending["id"] = store.insert_pending(
            name=pending["name"],
            parent=head,
            manager=None,
            plugin=None,
            command=pending["command"],
            owner=NO_OWNER,
            deployment=dep.uuid,
            before=None,
        )
        drop_lock_files(target, probe)
        os.rename(probe, store.partial_path(pending["id"]))
    except BaseException:
        _forget_probe(target, probe)
        raise
    # The paths name it now; what they did is said once its sets are read, off this path
    # (ashcore/driftname.py).
    layer = make_layer(
        target, pending, Status.DRIFT, PackageDelta(), None, taken=now, extra={DRIFTED: changed}
    )
    log.info("ashlayers: kept changes made outside package operations as layer %d", layer.id)
    return layer.id


def keep_drift(target: Target, dep: SubvolumeInfo, *, strict: bool = False) -> int | None:
    """`capture_drift` for `ashctl`'s commands (rollback, replay, try), which are no
    manager's time: a drift layer kept is completed at once (its sets, its delta, its name
    for what it did). Call under the store lock."""
    head, _ = target.store.head(dep.uuid)
    kept = capture_drift(target, dep, strict=strict)
    if kept is not None and kept != head:
        from ashcore.sets import complete

        complete(target, kept)
    return kept
