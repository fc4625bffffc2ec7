"""Retention: which layers' snapshots to delete, and deleting them. Never on a package
operation's path.

A btrfs snapshot stands alone: deleting a layer's snapshot takes nothing from its parent or
its children, so retention may delete the snapshot of any layer, inner ones included. The
record stays as history (status `pruned`): list, tree, show and the package diff work on it;
what needs the files (rollback to it, `diff --files`) says the snapshot was pruned.

As in snapper's cleanup, each rule proposes layers, then what must never go is taken out:
- the deployment's own layer (each deployment's), which drift and the next layer stand on;
- pinned layers;
- the base (a layer with no parent), unless `keep_base = false`;
- a layer an operation needs: none runs while prune holds the lock (require_idle).

Rules: `keep` (the newest N snapshots stay), `keep_days` (those younger stay): a layer that
neither keeps goes. `max_size` (a budget for the bytes the layers added, ashcore/sizes.py):
the oldest go until the sum fits, whatever keep and keep_days say; a layer whose pruning would
free nothing (its data is its children's too) stays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable

from ashcore.errors import UsageError
from ashcore.model import Layer, Status
from ashcore.target import Target

log = logging.getLogger(__name__)


def _epoch(iso: str) -> float:
    """Seconds since the epoch; a time that cannot be read counts as the oldest."""
    try:
        return time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%S%z"))
    except ValueError:
        return 0.0


def has_snapshot(layer: Layer) -> bool:
    return layer.status not in (Status.PRUNED, Status.PENDING)


def protected(layers: Iterable[Layer], heads: Iterable[int], keep_base: bool = True) -> set[int]:
    """Layers whose snapshot must stay: pinned, each deployment's own layer, the base."""
    keep = {layer.id for layer in layers if layer.pinned} | set(heads)
    if keep_base:
        keep |= {layer.id for layer in layers if layer.parent is None}
    return keep


def by_rules(
    layers: list[Layer],
    heads: Iterable[int],
    keep: int | None,
    keep_days: float | None,
    *,
    keep_base: bool = True,
) -> list[Layer]:
    """The layers `keep` and `keep_days` let go (with snapshots, not protected), oldest first."""
    live = [layer for layer in layers if has_snapshot(layer)]
    if keep is None and keep_days is None:
        return []
    kept = protected(layers, heads, keep_base)
    if keep is not None:
        kept |= {layer.id for layer in sorted(live, key=lambda x: x.id)[max(0, len(live) - keep) :]}
    if keep_days is not None:
        cutoff = time.time() - keep_days * 86400
        kept |= {layer.id for layer in live if _epoch(layer.created) >= cutoff}
    return sorted((layer for layer in live if layer.id not in kept), key=lambda x: x.id)


def total_size(layers: Iterable[Layer]) -> int:
    """What the layers that keep their snapshots added (unmeasured ones count 0)."""
    return sum(layer.size or 0 for layer in layers if has_snapshot(layer))


def plan(
    target: Target,
    keep: int | None,
    keep_days: float | None,
    max_size: int | None,
    *,
    keep_base: bool = True,
) -> list[Layer]:
    """The layers to prune, oldest first (call under the store lock). With `max_size`, the
    sizes recorded count (measure them first, without the lock: `sizes.complete_sizes`), and
    each pruned layer's children are foreseen re-measured against the ancestor they will
    then stand on."""
    if keep is None and keep_days is None and max_size is None:
        raise UsageError(
            "no retention rule",
            hint="give --keep N, --keep-days D or --max-size SIZE, or set [retention] in ash.toml",
        )
    store = target.store
    layers = store.layers()
    heads = store.heads()
    doomed = by_rules(layers, heads, keep, keep_days, keep_base=keep_base)
    if max_size is None:
        return doomed
    by_id = {layer.id: layer for layer in layers}
    sizes = {layer.id: layer.size or 0 for layer in layers if has_snapshot(layer)}
    gone = {layer.id for layer in doomed}
    for layer_id in gone:
        _forget(target, by_id, sizes, gone, layer_id)
    safe = protected(layers, heads, keep_base)
    for layer in sorted(layers, key=lambda x: x.id):
        if sum(sizes.values()) <= max_size:
            break
        if layer.id in gone or layer.id in safe or not has_snapshot(layer):
            continue
        trial = dict(sizes)
        _forget(target, by_id, trial, gone | {layer.id}, layer.id)
        if sum(trial.values()) < sum(sizes.values()):  # a layer that frees nothing stays
            gone.add(layer.id)
            sizes = trial
    return [by_id[i] for i in sorted(gone)]


def _forget(
    target: Target, by_id: dict[int, Layer], sizes: dict[int, int], gone: set[int], layer_id: int
) -> None:
    """Foresee the sizes once `layer_id` is pruned: its own goes, its live children are
    measured against the ancestor they then stand on."""
    from ashcore.sizes import added

    sizes.pop(layer_id, None)
    base = by_id[layer_id].parent
    while base is not None and (base in gone or not has_snapshot(by_id[base])):
        base = by_id[base].parent
    for child in _live_children(by_id, gone, layer_id):
        if base is None:
            sizes[child] = 0
            continue
        old, new = target.store.layer_path(base), target.store.layer_path(child)
        sizes[child] = added(old, new, target.fs.changed_paths(old, new))


def _live_children(by_id: dict[int, Layer], gone: set[int], layer_id: int) -> list[int]:
    """The nearest descendants of `layer_id` that keep their snapshots."""
    found, todo = [], [layer_id]
    while todo:
        current = todo.pop()
        for layer in by_id.values():
            if layer.parent != current:
                continue
            if has_snapshot(layer) and layer.id not in gone:
                found.append(layer.id)
            else:
                todo.append(layer.id)
    return found


RECLAIM_WAIT = 60.0  # s: how long a prune on a full filesystem waits for the space it freed


def prune_layer(target: Target, layer: Layer) -> None:
    """Delete one layer's snapshot, keep its record as history (call under the store lock).
    The record is marked first: a kill before the delete leaves a pruned record whose
    snapshot doctor finishes deleting. Its children are measured again (sizes.py)."""
    store = target.store
    with store.transaction(store.db):
        store.mark_pruned(layer.id)
    target.fs.delete(store.layer_path(layer.id))
    _measure_children(target, [layer])


def prune_layers(target: Target, layers: list[Layer], say: Callable[[Layer], None]) -> None:
    """Prune `layers`, saying each (call under the store lock). On a full filesystem no
    record can be written first (a manifest needs a block, and one snapshot's deletion may
    free nothing: its data is its neighbours' too), so every snapshot goes first, the space
    is waited for, then the records are marked; a kill between leaves records without
    snapshots, which doctor keeps as pruned."""
    from ashcore.changes import keep_changes
    from ashcore.errors import BackendError
    from ashcore.storedb import full

    store = target.store
    if not full(store.path):
        for layer in layers:
            say(layer)
            keep_changes(target, layer.id)  # its history: `blame` reads it once it is gone
            prune_layer(target, layer)
        return
    for layer in layers:
        say(layer)
        target.fs.delete(store.layer_path(layer.id))
    target.fs.reclaim(store.path, RECLAIM_WAIT)
    try:
        for layer in layers:
            with store.transaction(store.db):
                store.mark_pruned(layer.id)
    except OSError as e:
        raise BackendError(
            f"the snapshots are deleted, but their records cannot be written: {e.strerror}",
            hint="free some space, then `ashctl doctor --repair` marks them pruned",
        ) from e
    _measure_children(target, layers)


def _measure_children(target: Target, layers: list[Layer]) -> None:
    """Measure again the children of pruned `layers`: what they added is now theirs alone."""
    from ashcore.sizes import measure, record_size

    by_id = {x.id: x for x in target.store.layers()}
    children = {c for layer in layers for c in _live_children(by_id, set(), layer.id)}
    for child in sorted(children):
        measured = measure(target, child)
        if measured is not None:
            record_size(target, child, measured)


def delete_layer(target: Target, layer: Layer) -> None:
    """Delete a leaf layer, record and all (the record first: no record points at a missing
    snapshot)."""
    store = target.store
    with store.transaction(store.db):
        store.delete_row(layer.id)
        store.reparent(layer.id, layer.parent)
    if has_snapshot(layer):
        target.fs.delete(store.layer_path(layer.id))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.manifest_path(layer.id))
    from ashcore.changes import forget_changes

    forget_changes(store, layer.id)
