"""Retention: which layers to delete, and deleting them. Never on a package operation's path.

As in snapper's cleanup: each rule proposes candidates, then shared filters remove what must
never go: a pinned layer, a deployment's layer and its ancestry, a layer with a surviving
descendant, a pending transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable

from ashcore.errors import UsageError
from ashcore.lifecycle import Target
from ashcore.model import Layer, Status

log = logging.getLogger(__name__)


def _epoch(iso: str) -> float:
    """Seconds since the epoch; a time that cannot be read counts as the oldest."""
    try:
        return time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%S%z"))
    except ValueError:
        return 0.0


def protected(layers: Iterable[Layer], heads: Iterable[int]) -> set[int]:
    """Pinned layers, and every deployment's layer with all its ancestors."""
    by_id = {layer.id: layer for layer in layers}
    keep = {layer.id for layer in by_id.values() if layer.pinned}
    for head in heads:
        current: int | None = head
        while current is not None and current not in keep:
            keep.add(current)
            current = by_id[current].parent if current in by_id else None
    return keep


def candidates(
    layers: list[Layer], heads: Iterable[int], keep: int | None, keep_days: float | None
) -> list[Layer]:
    """Layers the retention rules allow to delete, leaves first."""
    if keep is None and keep_days is None:
        raise UsageError("no retention rule", hint="give --keep N, or set [retention] in ash.toml")
    newest_first = sorted(layers, key=lambda layer: layer.id, reverse=True)
    kept = set()
    if keep is not None:
        kept |= {layer.id for layer in newest_first[:keep]}
    if keep_days is not None:
        cutoff = time.time() - keep_days * 86400
        kept |= {layer.id for layer in layers if _epoch(layer.created) >= cutoff}
    kept |= protected(layers, heads)
    # A layer with a surviving descendant stays: its children would lose their base.
    parents = {layer.id: layer.parent for layer in layers}
    for layer_id in list(kept):
        current = parents.get(layer_id)
        while current is not None and current not in kept:
            kept.add(current)
            current = parents.get(current)
    return [
        layer for layer in newest_first if layer.id not in kept and layer.status != Status.PENDING
    ]


def delete_layer(target: Target, layer: Layer) -> None:
    """Delete one layer: the record first (so no record points at a missing snapshot)."""
    store = target.store
    with store.transaction(store.db):
        store.delete_row(layer.id)
        store.reparent(layer.id, layer.parent)
    target.fs.delete(store.layer_path(layer.id))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.manifest_path(layer.id))
