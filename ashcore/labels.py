"""Labels: a purpose's name ("desktop", "mail") for the line up to a layer.

A label names one layer; a layer may have several. It is accepted wherever a LAYER is
(Store.find: an id, then a label, then a unique name; a label that is another layer's name
is refused as ambiguous). It is kept in the layer's record and in its manifest (`labels`),
so that `doctor --repair` rebuilds it, carried by `export`, and moved by a replay to the
layer that replaces its own.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from ashcore.errors import UsageError
from ashcore.target import Target

MAX_LABEL = 64
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_label(label: str) -> str:
    """A label: letters, digits and `._+-`, not all digits (an id), no `..` (a range)."""
    if not _LABEL.fullmatch(label) or ".." in label or len(label) > MAX_LABEL:
        raise UsageError(
            f"{label!r} is not a label",
            hint=f"use letters, digits and . _ + - (at most {MAX_LABEL}, no '..'): e.g. desktop",
        )
    if label.isdigit():
        raise UsageError(f"{label!r} is not a label: it reads as a layer id", hint="add a letter")
    return label


def add_label(target: Target, label: str, layer_id: int, *, move: bool = False) -> int | None:
    """Label `layer_id`; returns the layer the label was taken from (when `move`), else
    None. Call under the store lock."""
    store = target.store
    check_label(label)
    was = store.labelled(label)
    if was is not None and was != layer_id and not move:
        raise UsageError(
            f"the label {label!r} is on layer {was}",
            hint=f"`ashctl label --force {layer_id} {label}` moves it",
        )
    clash = [x.id for x in store.layers() if x.name == label and x.id != layer_id]
    if clash:
        raise UsageError(
            f"layer {clash[0]} is named {label!r}: the label would make that name ambiguous",
            hint="choose another label",
        )
    with store.transaction(store.db):
        store.set_label(label, layer_id)
    if was is not None and was != layer_id:
        _write(target, was)
    _write(target, layer_id)
    return was if was != layer_id else None


def remove_label(target: Target, label: str) -> int:
    """Take `label` away; returns the layer it was on. Call under the store lock."""
    store = target.store
    was = store.labelled(label)
    if was is None:
        raise UsageError(f"no label {label!r}", hint="`ashctl label` lists them")
    with store.transaction(store.db):
        store.set_label(label, None)
    _write(target, was)
    return was


def move_labels(target: Target, moves: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """Move the labels of each old layer to its new one (a replay's replacements); returns
    (label, old, new) for each moved. Call under the store lock."""
    store = target.store
    on = store.labels()
    moved = []
    with store.transaction(store.db):
        for old, new in moves:
            for label in on.get(old, []):
                store.set_label(label, new)
                moved.append((label, old, new))
    for layer_id in {x for _, old, new in moved for x in (old, new)}:
        _write(target, layer_id)
    return moved


def restore_labels(target: Target, layer_id: int, manifest: dict[str, object]) -> None:
    """Put back the labels a manifest names (the database rebuilt), each unless another
    layer has it."""
    store = target.store
    found = manifest.get("labels")
    for label in found if isinstance(found, list) else []:
        if isinstance(label, str) and _LABEL.fullmatch(label) and store.labelled(label) is None:
            store.set_label(label, layer_id)


def _write(target: Target, layer_id: int) -> None:
    """The layer's labels into its manifest."""
    labels = target.store.labels().get(layer_id, [])
    target.store.amend_manifest(layer_id, "labels", labels)


def cmd_label(target: Target, args: argparse.Namespace) -> int:
    """`ashctl label` (list), `label LAYER NAME [--force]`, `label --remove NAME`."""
    from ashcore.show import print_json
    from ashcore.text import escaped

    store = target.store
    words = [w for w in (args.layer, args.label) if w is not None]
    if not words and (args.remove or args.force):
        raise UsageError("which label?", hint="ashctl label --remove NAME, or label LAYER NAME")
    if not words:
        on = store.labels()
        if args.json:
            print_json({label: layer for layer, names in on.items() for label in names})
            return 0
        for layer_id, names in sorted(on.items()):
            name = escaped(store.get(layer_id).name)
            for label in names:
                print(f"{label}  {layer_id}  {name}")
        return 0
    with store.locked(target.config.lock_timeout):
        if args.remove:
            label = words[-1]
            if len(words) == 2 and store.labelled(label) != store.find(words[0]).id:
                raise UsageError(
                    f"the label {label!r} is not on layer {words[0]}",
                    hint="`ashctl label --remove NAME` takes it from where it is",
                )
            was = remove_label(target, label)
            print(f"removed the label {label} from layer {was}")
            return 0
        if len(words) != 2:
            raise UsageError("a label needs a layer and a name", hint="ashctl label LAYER NAME")
        layer = store.find(words[0])
        moved_from = add_label(target, words[1], layer.id, move=args.force)
        moved = f" (moved from layer {moved_from})" if moved_from is not None else ""
        print(f"labelled layer {layer.id} ({escaped(layer.name)}) {words[1]}{moved}")
    return 0


def head_if_set_up(target: Target) -> int | None:
    """The root's layer, when it is set up (its hooks make layers)."""
    if not target.store.exists():
        return None
    return target.store.head(target.deployment().uuid)[0]


def label_made(
    target: Target, labels: tuple[str, ...], before: int | None, say: Callable[[str], None]
) -> None:
    """Give the layer an applied operation made (the root's layer moved on from `before`)
    the recipe's labels for it, each one not taken."""
    after = head_if_set_up(target) if labels else None
    if after is None or after == before:
        if labels:
            say(f"      no layer made here: not labelled {', '.join(labels)}")
        return
    with target.store.locked(target.config.lock_timeout):
        for label in labels:
            if (was := target.store.labelled(label)) is not None:
                say(f"      the label {label} is on layer {was}: left there")
                continue
            add_label(target, label, after)
            say(f"      labelled layer {after} {label}")
