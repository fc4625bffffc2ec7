"""`ashctl squash A B [--name N]`: one layer of the run A..B on the deployment's line, so that
a purpose can be one layer.

The squashed layer is a read-only snapshot of B's (B's state, a copy that costs metadata
only), child of A's parent, with the commands of the run in order and the package delta of
the whole run. The old layers keep their records, replaced by it (as a replay's are); the
layers after B on the line are recorded again on top of it (snapshots of theirs), and the
deployment's layer with them. Nothing is run: no package manager is asked.

A replay or an export of a squashed layer replays what it was made of, in order: its old
layers (`steps_of` expands it; plugin `squash` in the record).
"""

from __future__ import annotations

import argparse
import os

from ashcore.errors import UsageError
from ashcore.lines import branch
from ashcore.model import Layer, Origin, PackageDelta, Status
from ashcore.naming import MAX_NAME
from ashcore.ondisk import read_json
from ashcore.process import owner_of
from ashcore.recovery import require_idle
from ashcore.sets import READ_IN_ROOT
from ashcore.store import now_iso
from ashcore.target import Target
from ashcore.text import escaped

SQUASH = "squash"
"""The plugin of a squashed layer's record: replayed as the layers it was made of."""


def run_of(target: Target, a: Layer, b: Layer) -> tuple[list[Layer], list[Layer]]:
    """(A..B, the layers after B up to the deployment's layer); UsageError when the run is
    not on the deployment's line, is one layer, or holds what cannot be squashed."""
    line = branch(target, a)
    ids = [layer.id for layer in line]
    if b.id not in ids:
        raise UsageError(
            f"layer {b.id} is not layer {a.id} nor after it on the deployment's line",
            hint="squash A B: A first, B later, both on the deployment's line (`ashctl tree`)",
        )
    cut = ids.index(b.id) + 1
    run, later = line[:cut], line[cut:]
    if len(run) < 2:
        raise UsageError(f"layer {a.id} alone is one layer already", hint="name a later B")
    if a.parent is None:
        raise UsageError(f"layer {a.id} is a base: it cannot be squashed", hint="start after it")
    for layer in run:
        if layer.status not in (Status.COMMITTED, Status.DRIFT, Status.PRUNED):
            raise UsageError(
                f'layer {layer.id} "{escaped(layer.name)}" is {layer.status.value}: only whole'
                " operations are squashed",
                hint="remove it first, or squash the runs before and after it",
            )
    for layer in [b, *later]:
        if not os.path.isdir(target.store.layer_path(layer.id)):
            raise UsageError(
                f"layer {layer.id} was pruned: its state is needed (B and the layers after it)",
                hint="squash up to a layer that keeps its snapshot",
            )
    return run, later


def squash(target: Target, a: Layer, b: Layer, name: str | None) -> tuple[Layer, list[Layer]]:
    """Make the squashed layer of A..B, and record the later layers again on it; returns it
    and the later layers' new records."""

    store = target.store
    with store.locked(target.config.lock_timeout):
        require_idle(target)
        # One database transaction: a kill before its end leaves the records as they were,
        # and at most snapshots with manifests that name no deployment, which `doctor
        # --repair` records as a branch beside the line (never its head).
        with store.transaction(store.db):
            return _squash(target, a, b, name)


def _squash(target: Target, a: Layer, b: Layer, name: str | None) -> tuple[Layer, list[Layer]]:
    from ashcore.sets import delta_between, sets_of

    store = target.store
    run, later = run_of(target, a, b)
    assert a.parent is not None
    before, after = sets_of(target, a.parent), sets_of(target, b.id)
    if before is not None and after is not None:
        delta = PackageDelta()
        for part in delta_between(before, after).values():
            delta = delta.merge(part)
    else:  # no sets recorded: the run's own deltas, in order
        delta = _folded(run)
    default = "; ".join(layer.name for layer in run)
    made = _copy(
        target,
        b,
        parent=a.parent,
        name=name or (default if len(default) <= MAX_NAME else default[: MAX_NAME - 3] + "..."),
        command="; ".join(layer.command for layer in run),
        manager=None,
        packages=delta,
        origin=Origin(Origin.SQUASH),
    )
    store.amend_manifest(made.id, SQUASH, [layer.id for layer in run])
    for layer in run:
        store.set_replaced_by(layer.id, made.id)
    pairs = [(layer.id, made.id) for layer in run]
    parent, copies = made.id, []
    for layer in later:
        copy = _copy(
            target,
            layer,
            parent=parent,
            name=layer.name,
            command=layer.command,
            manager=layer.manager,
            packages=layer.packages,
            origin=store.layer_owner(layer.id)[1],
            status=layer.status,
        )
        store.set_replaced_by(layer.id, copy.id)
        pairs.append((layer.id, copy.id))
        copies.append(copy)
        parent = copy.id
    dep = target.deployment().uuid
    _, checked, late_until = store.head_state(dep)
    store.set_head(dep, parent, checked, late_until)
    from ashcore.labels import move_labels

    move_labels(target, pairs)
    return made, copies


def _copy(
    target: Target,
    source: Layer,
    *,
    parent: int | None,
    name: str,
    command: str,
    manager: str | None,
    packages: PackageDelta,
    origin: Origin | None,
    status: Status = Status.COMMITTED,
) -> Layer:
    """A new layer whose snapshot is a snapshot of `source`'s, with this record; its
    manifest keeps `source`'s package sets (the state is the same)."""
    store, fs = target.store, target.fs
    layer_id = store.insert_pending(
        name=name,
        parent=parent,
        manager=manager,
        origin=origin or Origin(Origin.DRIFT),
        command=command,
        owner=owner_of(os.getpid()),
        deployment=target.deployment().uuid,
        before=None,
    )
    partial, final = store.partial_path(layer_id), store.layer_path(layer_id)
    fs.snapshot(store.layer_path(source.id), partial, read_only=True)
    os.rename(partial, final)
    layer = Layer(
        id=layer_id,
        name=name,
        parent=parent,
        manager=manager,
        command=command,
        status=status,
        created=now_iso(),
        finished=now_iso(),
        packages=packages,
        uuid=fs.info(final).uuid,
    )
    manifest = read_json(store.manifest_path(source.id))
    installed = manifest.get("installed") if isinstance(manifest, dict) else None
    store.write_manifest(layer, origin, None, installed)
    if isinstance(manifest, dict) and isinstance(manifest.get("sets"), dict):
        store.amend_manifest(layer_id, "sets", manifest["sets"], durable=False)
        if manifest.get(READ_IN_ROOT) is True:  # else doctor takes them for an old misread
            store.amend_manifest(layer_id, READ_IN_ROOT, True, durable=False)
    store.finalize(layer, None, None)
    return layer


def made_of(target: Target, layer: Layer) -> list[Layer] | None:
    """The layers a squashed layer was made of, oldest first; None when it is no squash."""
    if target.store.layer_owner(layer.id)[1] != Origin(Origin.SQUASH):
        return None
    manifest = read_json(target.store.manifest_path(layer.id))
    ids = manifest.get(SQUASH) if isinstance(manifest, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise UsageError(
            f'layer {layer.id} "{escaped(layer.name)}" is a squash whose parts are not known'
            " (its manifest lost them)",
            hint="roll back past it instead",
        )
    return [target.store.get(i) for i in ids]


def _folded(run: list[Layer]) -> PackageDelta:
    """The run's deltas in one, in order: what was added then removed is neither."""
    added: dict[str, str] = {}
    removed: dict[str, str] = {}
    changed: dict[str, tuple[str, str]] = {}
    for layer in run:
        d = layer.packages
        for n, v in d.added:
            was = removed.pop(n, None)
            if was is None:
                added[n] = v
            else:  # removed, then added again: changed, if the version did
                changed[n] = (was, v)
        for n, v in d.removed:
            if added.pop(n, None) is None:
                removed[n] = changed.pop(n, (v, v))[0]
        for n, old, new in d.upgraded + d.downgraded:
            if n in added:
                added[n] = new
            else:
                changed[n] = (changed.get(n, (old, new))[0], new)
    return PackageDelta(
        tuple(sorted(added.items())),
        tuple(sorted(removed.items())),
        tuple(sorted((n, o, w) for n, (o, w) in changed.items() if o != w)),
    )


def cmd_squash(target: Target, args: argparse.Namespace) -> int:
    from ashcore.naming import check_name

    name = check_name(args.name) if args.name is not None else None
    a, b = target.store.find(args.a), target.store.find(args.b)
    if args.dry_run:
        run, later = run_of(target, a, b)
        print(f"would squash layers {', '.join(str(x.id) for x in run)} into one layer")
        if later:
            print(f"and record layers {', '.join(str(x.id) for x in later)} again on it")
        return 0
    made, copies = squash(target, a, b, name)
    print(
        f'squashed layers {a.id}..{b.id} into layer {made.id} "{escaped(made.name)}"'
        f" ({made.packages.summary()}); the old layers stay until pruned"
    )
    for copy in copies:
        print(f'layer {copy.id} "{escaped(copy.name)}" on it')
    from ashcore.sizes import SIZE_WALK, complete_sizes

    complete_sizes(target, limit=len(copies) + 1 + SIZE_WALK)
    return 0
