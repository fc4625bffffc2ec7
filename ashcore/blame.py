"""`ashctl blame PATH`: which layers changed a path, newest first, and which package owns it.

Read from the layers' change lists (ashcore/changes.py), not from their snapshots: one small
file a layer, about 30 microseconds each. A layer measured before lists were kept gets its
list the first time blame needs it (taken from its snapshot and its parent's, then kept).
The owner of the path is asked of each manager present in the layer's snapshot, with the
root's own tools chrooted into it (Manager.owner_of): the package as that layer had it.
"""

from __future__ import annotations

import argparse
import os
import posixpath
from collections.abc import Iterator

from ashcore.changes import keep_changes, read_changes
from ashcore.errors import UsageError
from ashcore.model import Layer, Status
from ashcore.target import Target
from ashcore.value import Value


class Blamed(Value):
    """One layer that changed the path (or a base that had it)."""

    __slots__ = ("base", "layer", "owners", "paths", "removed", "since")
    layer: Layer
    paths: tuple[str, ...]  # what of the path it changed (the path, or what is below it)
    removed: bool  # the path is gone in this layer
    owners: dict[str, list[str]]  # manager -> the packages that own the path, as it says
    since: int | None  # the layer its change list is taken from, when not its parent
    base: bool  # a base: the path was there when the store was set up

    def __init__(
        self,
        layer: Layer,
        paths: tuple[str, ...],
        *,
        removed: bool = False,
        owners: dict[str, list[str]] | None = None,
        since: int | None = None,
        base: bool = False,
    ) -> None:
        self._init(
            layer=layer,
            paths=paths,
            removed=removed,
            owners=owners or {},
            since=since,
            base=base,
        )


class Blame(Value):
    __slots__ = ("found", "path", "unknown")
    path: str  # relative to the root
    found: tuple[Blamed, ...]  # newest first
    unknown: tuple[int, ...]  # layers whose change list cannot be known (pruned before)

    def __init__(self, path: str, found: tuple[Blamed, ...], unknown: tuple[int, ...]) -> None:
        self._init(path=path, found=found, unknown=unknown)


def relative(path: str) -> str:
    """PATH as the root sees it, relative to the root ("" is the root itself)."""
    if not path or "\0" in path:
        raise UsageError("an empty PATH", hint="give a path as the root sees it: /etc/hosts")
    clean = posixpath.normpath("/" + path).lstrip("/")
    return "" if clean == "." else clean


def line_of(by_id: dict[int, Layer], tip: int) -> Iterator[Layer]:
    """The layer `tip` and its ancestors, newest first."""
    current: int | None = tip
    seen: set[int] = set()
    while current is not None and current in by_id and current not in seen:
        seen.add(current)
        yield by_id[current]
        current = by_id[current].parent


def blame(target: Target, path: str, tip: int | None, *, owners: bool = True) -> Blame:
    """The layers on the line of `tip` (None: every layer, every branch) that changed `path`,
    newest first; a base that has it last."""
    store = target.store
    rel = relative(path)
    by_id = {layer.id: layer for layer in store.layers()}
    if tip is None:
        layers = sorted(by_id.values(), key=lambda x: x.id, reverse=True)
    else:
        layers = list(line_of(by_id, tip))
    lists = {layer.id: read_changes(store, layer.id) for layer in layers if layer.parent}
    # Taken once from the snapshots and kept; a layer pruned without one stays unknown (and
    # costs no wait for the lock).
    missing = [
        i for i, found in lists.items() if found is None and os.path.isdir(store.layer_path(i))
    ]
    if missing:
        with store.locked(target.config.lock_timeout):
            for layer_id in missing:
                lists[layer_id] = keep_changes(target, layer_id)
    found: list[Blamed] = []
    unknown: list[int] = []
    for layer in layers:
        if layer.parent is None:
            if _has(store.layer_path(layer.id), rel):
                said = _owners(target, layer, rel) if owners else {}
                found.append(Blamed(layer, (rel,), owners=said, base=True))
            continue
        changes = lists.get(layer.id)
        if changes is None:
            unknown.append(layer.id)
            continue
        touched = changes.touches(rel)
        if not touched:
            continue
        snapshot = store.layer_path(layer.id)
        removed = os.path.isdir(snapshot) and not _has(snapshot, rel)
        found.append(
            Blamed(
                layer,
                tuple(touched),
                removed=removed,
                owners=_owners(target, layer, rel) if owners else {},
                since=changes.against if changes.against != layer.parent else None,
            )
        )
    return Blame(rel, tuple(found), tuple(unknown))


def _has(snapshot: str, rel: str) -> bool:
    return os.path.isdir(snapshot) and os.path.lexists(os.path.join(snapshot, rel))


def _owners(target: Target, layer: Layer, rel: str) -> dict[str, list[str]]:
    """manager -> the packages that own `rel` in the layer's snapshot (when it removed the
    path: in its parent's, which had it). Managers that say none are left out."""
    from ashcore.registry import managers

    store = target.store
    snapshot = store.layer_path(layer.id)
    if layer.status == Status.PRUNED or not os.path.isdir(snapshot):
        return {}
    if not _has(snapshot, rel) and layer.parent is not None:
        snapshot = store.layer_path(layer.parent)
        if not _has(snapshot, rel):
            return {}
    said: dict[str, list[str]] = {}
    for manager in managers():
        packages = manager.owner_of(snapshot, "/" + rel) if rel else None
        if packages:
            said[manager.name] = packages
    return said


def to_json(result: Blame, labels: dict[int, list[str]]) -> dict[str, object]:
    return {
        "path": "/" + result.path,
        "layers": [
            {
                "id": b.layer.id,
                "name": b.layer.name,
                "command": b.layer.command,
                "manager": b.layer.manager,
                "status": b.layer.status.value,
                "created": b.layer.created,
                "labels": labels.get(b.layer.id, []),
                "paths": ["/" + p for p in b.paths],
                "removed": b.removed,
                "owners": b.owners,
                "since": b.since,
                "base": b.base,
            }
            for b in result.found
        ],
        "unknown": list(result.unknown),
    }


def render(result: Blame, head: int | None, labels: dict[int, list[str]]) -> list[str]:
    """Text lines: a header, one line a layer (`*` marks the deployment's layer)."""
    from ashcore.text import escaped

    shown = "/" + escaped(result.path)
    if not result.found:
        lines = [f"{shown}: no layer changed it"]
    else:
        lines = [f"{shown}: {len(result.found)} layers, newest first"]
    for b in result.found:
        mark = "*" if b.layer.id == head else " "
        what = "base: there when the store was set up" if b.base else escaped(b.layer.name)
        notes = []
        if b.removed:
            notes.append("removed it")
        if len(b.paths) > 1 or (b.paths and b.paths[0] != result.path):
            notes.append(f"{len(b.paths)} paths below")
        if b.since is not None:
            notes.append(f"with the layers since {b.since}, pruned before it was measured")
        for manager, packages in sorted(b.owners.items()):
            notes.append(f"{manager}: {', '.join(escaped(p) for p in packages)}")
        if b.layer.id in labels:
            notes.append("label " + ", ".join(labels[b.layer.id]))
        tail = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(f"{mark}{b.layer.id:>5}  {b.layer.created[:19]}  {what}{tail}")
    if result.unknown:
        ids = ", ".join(str(i) for i in result.unknown[:5])
        more = " ..." if len(result.unknown) > 5 else ""
        lines.append(
            f"unknown: {len(result.unknown)} layers ({ids}{more}) were pruned before their"
            " changes were kept"
        )
    return lines


def cmd_blame(target: Target, args: argparse.Namespace) -> int:
    from ashcore.show import head_of, print_json

    head = head_of(target)
    if head is None and not args.all:
        raise UsageError("the deployment has no layer yet", hint="`ashctl blame --all PATH`")
    result = blame(target, args.path, None if args.all else head, owners=not args.no_owners)
    labels = target.store.labels()
    if args.json:
        print_json(to_json(result, labels))
    else:
        for line in render(result, head, labels):
            print(line)
    return 0
