"""ashctl's commands that change the root or its store: run, rollback, remove, try, deploy,
export, apply, rebase, prune, doctor, pin, setup."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sqlite3
import subprocess
import sys

from ashcore.errors import AshError, CannotRunError, UsageError
from ashcore.lifecycle import Operation, abandon, begin, commit
from ashcore.model import Layer, Origin
from ashcore.naming import check_name
from ashcore.process import owner_of, pid_of
from ashcore.recovery import require_idle
from ashcore.show import head_of
from ashcore.target import Target
from ashcore.text import escaped

log = logging.getLogger("ashctl")


def cmd_run(target: Target, args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("no command to run", hint="ashctl run [--name NAME] -- CMD...")
    name = check_name(args.name) if args.name is not None else os.environ.get("ASH_NAME") or None
    op = Operation(
        origin=Origin(Origin.RUN),
        manager=None,
        argv=tuple(argv),
        owner=owner_of(os.getpid()),
        name=name,
    )
    begin(target, op, None)
    try:
        process = subprocess.Popen(argv)
    except OSError as e:
        # Nothing ran, so nothing changed: no layer, no pending transaction left.
        abandon(target, op)
        raise CannotRunError(
            f"cannot run '{escaped(argv[0])}': {e.strerror}",
            not_found=e.errno == errno.ENOENT,
        ) from e
    with process:
        try:
            code = process.wait()
        except KeyboardInterrupt:
            process.kill()
            process.wait()
            commit(target, op, None, failed=True)
            raise
    layer = commit(target, op, None, failed=code != 0)
    if layer is not None:
        from ashcore.sets import complete_now

        complete_now(target, layer.id)
        log.info("layer %d: %s (%s)", layer.id, layer.name, layer.status.value)
        from ashcore.boot.menu import refresh_quietly

        refresh_quietly(target)  # the menu's recent layers, as the hooks' helper rewrites it
    return code if code >= 0 else 128 - code


def cmd_rollback(target: Target, args: argparse.Namespace) -> int:
    from ashcore.rollback import default_target, rollback

    layer = target.store.find(args.layer) if args.layer is not None else default_target(target)
    _, at_reboot = rollback(target, layer)
    when = "at the next boot" if at_reboot else "now"
    print(f"rolled back to layer {layer.id} ({layer.name}): takes effect {when}")
    return 0


def cmd_remove(target: Target, args: argparse.Namespace) -> int:
    from ashcore.lines import branch
    from ashcore.prune import delete_layer
    from ashcore.trial import discard, try_of

    with target.store.locked(target.config.lock_timeout):
        require_idle(target)
        layer = target.store.find(args.layer)
        layers = target.store.layers()
        if layer.pinned:
            raise UsageError(f"layer {layer.id} is pinned", hint=f"`ashctl unpin {layer.id}` first")
        tried = try_of(target, layer)
        if tried is not None and not args.dry_run:
            discard(target, tried)  # a try not deployed goes with its layer
            print(f"removed the try {os.path.basename(tried)}")
        if layer.id in target.store.heads():
            raise UsageError(
                f"layer {layer.id} is a deployment's layer: the root stands on it",
                hint="roll back to another layer first",
            )
        children = [other for other in layers if other.parent == layer.id]
        if not children:
            if args.dry_run:
                print(f"would remove layer {layer.id} ({escaped(layer.name)})")
                return 0
            delete_layer(target, layer)
            print(f"removed layer {layer.id} ({escaped(layer.name)})")
            return 0
        head = head_of(target)
        line = [c for c in children if head is not None and on_line(target, c, head)]
        if not line or layer.parent is None:
            shown = ", ".join(str(c.id) for c in children[:5])
            raise UsageError(
                f"layer {layer.id} has children ({shown}) off the deployment's line: replay"
                " rebuilds the deployment's line only",
                hint="roll back onto that line first, or `ashctl prune` frees its space and"
                " keeps its record",
            )
        branch(target, line[0])  # on the line: checked before anything is made
        base = target.store.get(layer.parent)
    return replay_line(
        target, base, line[0], args.dry_run, f"removed layer {layer.id}", removed=layer
    )


def on_line(target: Target, layer: Layer, head: int) -> bool:
    current: int | None = head
    while current is not None:
        if current == layer.id:
            return True
        current = target.store.get(current).parent
    return False


def cmd_try(target: Target, args: argparse.Namespace) -> int:
    from ashcore.trial import trial

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    name = check_name(args.name) if args.name is not None else None
    label = getattr(args, "label", None)
    if label is not None:
        from ashcore.labels import check_label

        check_label(label)
        if (was := target.store.labelled(label)) is not None:  # before anything runs
            raise UsageError(
                f"the label {label!r} is on layer {was}",
                hint=f"`ashctl label --remove {label}` first, or choose another",
            )
    path, layer, code = trial(target, argv, name)
    if layer is None:
        print("nothing changed in the try: removed it", file=sys.stderr)
    else:
        if label is not None:
            from ashcore.labels import add_label

            with target.store.locked(target.config.lock_timeout):
                add_label(target, label, layer)
            print(f"labelled layer {layer} {label}", file=sys.stderr)
        print(
            f"tried: layer {layer} in {os.path.basename(path)}, the running root untouched;"
            f" `ashctl deploy {layer}` makes it the deployment, `ashctl remove {layer}` drops it",
            file=sys.stderr,
        )
    return code if code >= 0 else 128 - code


def cmd_deploy(target: Target, args: argparse.Namespace) -> int:
    from ashcore.trial import deploy

    layer = target.store.find(args.layer)
    _, at_reboot = deploy(target, layer)
    when = "at the next boot" if at_reboot else "now"
    print(f"deployed layer {layer.id} ({escaped(layer.name)}): takes effect {when}")
    return 0


def cmd_export(target: Target, args: argparse.Namespace) -> int:
    from ashcore.export import export

    if args.layer is not None:
        last = target.store.find(args.layer)
    else:
        head = head_of(target)
        if head is None:
            raise UsageError("the deployment has no layer yet", hint="name a layer")
        last = target.store.get(head)
    for path in export(target, last, args.output):
        print(f"wrote {path}")
    return 0


def cmd_apply(target: Target, args: argparse.Namespace) -> int:
    from ashcore.fleet.reference import looks_like_reference
    from ashcore.recipe import apply

    if not os.path.exists(args.recipe) and looks_like_reference(args.recipe):
        from ashcore.fleet.commands import apply_reference

        return apply_reference(target, args)

    count = apply(
        target, args.recipe, lambda m: print(m, flush=True), dry_run=args.dry_run, first=args.first
    )
    print(f"{'would apply' if args.dry_run else 'applied'} {count} operations to {target.root}")
    return 0


def cmd_rebase(target: Target, args: argparse.Namespace) -> int:
    from ashcore.lines import between, tip_of

    first, last = _range(target, args.layer)
    base = target.store.find(args.onto)
    head = head_of(target)
    on_deployed = head is not None and on_line(target, first, head)
    if last is None:
        last = head if on_deployed and head is not None else tip_of(target, first)
    switch = args.deploy or last == head
    if base.id in {layer.id for layer in between(target, first, last)}:
        raise UsageError(
            f"layer {base.id} is on the line being replayed (layers {first.id} to {last})",
            hint="rebase onto a layer of another line, or one before FIRST",
        )
    return replay_line(
        target,
        base,
        first,
        args.dry_run,
        f"rebased onto layer {base.id}",
        last=last,
        switch=switch,
    )


def _range(target: Target, ref: str) -> tuple[Layer, int | None]:
    """FIRST or FIRST..LAST: the first layer, and the last when named. A name holding `..`
    is a name when it is one."""
    from ashcore.errors import NotFoundError

    if ".." in ref:
        try:
            return target.store.find(ref), None
        except NotFoundError:
            pass
        first, _, last = ref.partition("..")
        if not first or not last:
            raise UsageError(f"{ref!r}: a range is FIRST..LAST", hint="e.g. 7..12")
        return target.store.find(first), target.store.find(last).id
    return target.store.find(ref), None


def replay_line(
    target: Target,
    base: Layer,
    first: Layer,
    dry_run: bool,
    done: str,
    *,
    last: int | None = None,
    switch: bool = True,
    removed: Layer | None = None,
) -> int:
    from ashcore.replay import rebuild
    from ashcore.steps import foresee_dissolved, plan

    if dry_run:
        steps = plan(target, first, last)
        what = "the deployment" if switch else "a new branch"
        print(f"would rebuild {what} on layer {base.id} ({escaped(base.name)}):")
        for step in steps:
            why = foresee_dissolved(target, base, step)
            if why is not None:
                print(f"  would dissolve {step.describe()} ({why})")
            else:
                print(f"  would replay {step.describe()}")
        replaced = ", ".join(str(old.id) for step in steps for old in step.layers)
        print(f"layers {replaced} would be replaced (kept as the old line until pruned)")
        return 0

    def say(message: str) -> None:
        print(message, flush=True)

    outcome = rebuild(target, base, first, say, last=last, switch=switch, removed=removed)
    tip = outcome.made[-1][1] if outcome.made else base.id
    if switch:
        when = "at the next boot" if outcome.at_reboot else "now"
        print(
            f"{done}: {len(outcome.made)} layers replayed, {len(outcome.dissolved)} dissolved;"
            f" takes effect {when} (the old line stays until pruned)"
        )
    else:
        print(
            f"{done}: {len(outcome.made)} layers replayed, {len(outcome.dissolved)} dissolved;"
            f" a new branch, not deployed: its tip is layer {tip} (`ashctl deploy {tip}`"
            " makes it the deployment; the old line stays until pruned)"
        )
    for old, why in outcome.dissolved:
        print(f'dissolved: "{escaped(old.name)}" ({why})')
    print(f"tip: layer {tip}")
    # The steps' helpers measured none (a replay waits for each): measured now, once.
    from ashcore.sizes import SIZE_WALK, complete_sizes

    complete_sizes(target, limit=len(outcome.made) + SIZE_WALK)
    return 0


def cmd_prune(target: Target, args: argparse.Namespace) -> int:
    from ashcore.prune import plan, prune_layers, total_size
    from ashcore.rollback import resume
    from ashcore.sizes import complete_sizes, human
    from ashcore.text import parse_size

    rules = target.config.retention
    keep = args.keep if args.keep is not None else rules.keep
    days = args.keep_days if args.keep_days is not None else rules.keep_days
    try:
        budget = parse_size(args.max_size) if args.max_size is not None else rules.max_size
    except ValueError as e:
        raise UsageError(f"--max-size: {e}", hint="e.g. --max-size 20G") from None
    if keep is not None and keep < 0:
        raise UsageError("--keep must be 0 or more", hint="e.g. --keep 10")
    if days is not None and not 0 <= days <= 36500:
        raise UsageError("--keep-days must be 0 to 36500", hint="e.g. --keep-days 30")
    if budget is not None:
        complete_sizes(target)  # a budget needs every size (reads snapshots, without the lock)
    with target.store.locked(target.config.lock_timeout):
        require_idle(target)
        if (said := resume(target)) is not None:
            log.info("%s", said)
        before = total_size(target.store.layers())
        doomed = plan(target, keep, days, budget, keep_base=rules.keep_base)
        verb = "would prune" if args.dry_run else "pruning"

        def say(layer: Layer) -> None:
            print(f"{verb} layer {layer.id} ({escaped(layer.name)}, {human(layer.size)})")

        if args.dry_run:
            for layer in doomed:
                say(layer)
        else:
            prune_layers(target, doomed, say)
        after = total_size(target.store.layers())
    if not doomed:
        print("nothing to prune")
    elif not args.dry_run:
        print(f"pruned {len(doomed)} layers: the layers hold {human(after)} (was {human(before)})")
    if budget is not None and after > budget:
        print(
            f"the layers still hold {human(after)}, over --max-size {human(budget)}: the rest is"
            " the deployment's own layer, pinned layers and the base (see `ashctl list`)"
        )
    return 0


def cmd_doctor(target: Target, args: argparse.Namespace) -> int:
    from ashcore.doctor import check, notes

    problems = check(target, repair=args.repair)
    for note in notes(target):
        print(note)
    for problem in problems:
        print(problem)
    if problems:
        print("run `ashctl doctor --repair` to mend these" if not args.repair else "not mended")
        return 1
    print("store is consistent")
    return 0


def cmd_pin(target: Target, args: argparse.Namespace) -> int:
    from ashcore.ondisk import read_json

    layer = target.store.find(args.layer)
    pinned = args.command == "pin"
    with target.store.locked(target.config.lock_timeout):
        target.store.set_pinned(layer.id, pinned)
        manifest = read_json(target.store.manifest_path(layer.id)) or {}
        updated = target.store.get(layer.id)
        target.store.write_manifest(
            updated,
            Origin.from_text(manifest.get("plugin")),
            manifest.get("deployment"),
            manifest.get("installed"),
        )
        if manifest.get("labels"):
            target.store.amend_manifest(layer.id, "labels", manifest["labels"])
    print(f"{'pinned' if pinned else 'unpinned'} layer {layer.id} ({layer.name})")
    return 0


def cmd_setup(target: Target, args: argparse.Namespace) -> int:
    from ashcore.setup import setup

    for line in setup(target):
        print(line)
    return 0


def settle(target: Target, timeout: float = 30.0) -> None:
    """Wait while the layer of a finished run is being made (its manager has exited, the
    helper its pre hook left is snapshotting): what is read or changed then includes it."""
    import time

    from ashcore.linger import helper_alive
    from ashcore.process import is_alive

    if not target.store.exists():
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pending = target.store.pending()
        except (AshError, sqlite3.Error):
            return  # the command itself says what is wrong (doctor --repair mends it)
        if pending is None or is_alive(pending["owner"]):
            return
        if not helper_alive(target.store.path, pid_of(pending["owner"])):
            return
        time.sleep(0.01)
