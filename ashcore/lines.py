"""Lines of layers: a layer and the layers after it, up to the deployment's layer, a named
last layer, or the tip where the line ends (replay, rebase)."""

from __future__ import annotations

from ashcore.errors import UsageError
from ashcore.model import Layer
from ashcore.target import Target


def _up_to(target: Target, first: Layer, last: int | None) -> list[Layer] | None:
    """The layers from `first` to `last`, oldest first, walking up from `last`; None when
    `first` is not among `last` and its ancestors."""
    line: list[Layer] = []
    current = last
    while current is not None:
        layer = target.store.get(current)
        line.append(layer)
        if current == first.id:
            return list(reversed(line))
        current = layer.parent
    return None


def branch(target: Target, first: Layer) -> list[Layer]:
    """The layers from `first` to the deployment's layer, oldest first; UsageError when
    `first` is not on the deployment's line."""
    head, _ = target.store.head(target.deployment().uuid)
    line = _up_to(target, first, head)
    if line is None:
        raise UsageError(
            f"layer {first.id} is not on the deployment's line (layer {head} and its ancestors)",
            hint="see `ashctl tree`; roll back to its line first",
        )
    return line


def between(target: Target, first: Layer, last: int) -> list[Layer]:
    """The layers from `first` to `last`, oldest first; UsageError when `last` is not
    `first` or a layer after it."""
    line = _up_to(target, first, last)
    if line is None:
        raise UsageError(
            f"layer {last} is not on the line of layer {first.id} (not it, nor a layer after it)",
            hint="see `ashctl tree`: FIRST..LAST names a layer after FIRST",
        )
    return line


def tip_of(target: Target, first: Layer) -> int:
    """The tip of `first`'s line: its one child, that child's, and so on (a line a replay
    replaced gives way to one that is not); UsageError where it branches."""
    layers = target.store.layers()
    children: dict[int, list[Layer]] = {}
    for layer in layers:
        if layer.parent is not None:
            children.setdefault(layer.parent, []).append(layer)
    current = first.id
    while kids := children.get(current):
        live = [k for k in kids if k.replaced_by is None] or kids
        if len(live) > 1:
            shown = ", ".join(str(k.id) for k in live[:5])
            raise UsageError(
                f"the line of layer {first.id} branches at layer {current} ({shown})",
                hint=f"name the last layer: {first.id}..LAST",
            )
        current = live[0].id
    return current
