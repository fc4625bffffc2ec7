"""`ashctl`: list, show, diff, roll back, prune and repair layers; set a root up.

Exit codes: 0 success, 1 failure, 2 usage; `run` exits with its command's code (127 or 126,
as a shell's, when the command cannot start). Errors are one line; --debug adds a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ashcore.errors import AshError, CannotRunError, UsageError
from ashcore.lifecycle import Operation, abandon, begin, commit, require_idle
from ashcore.model import Layer, PackageDelta, Status
from ashcore.naming import check_name
from ashcore.process import owner_of, pid_of
from ashcore.store import explain
from ashcore.target import Target
from ashcore.text import escaped, shortened

log = logging.getLogger("ashctl")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(message, hint=f"see `{self.prog} --help`")


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("ashlayers")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        print(f"ashctl (ashlayers) {found}")
        parser.exit()


LAYER = "a layer id or name"


def _layer_ref(text: str) -> str:
    """A LAYER argument: never empty or blank (an unset variable), which would otherwise
    read as "no argument" and pick a default."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty LAYER: give a layer id or name")
    return text


JSON = "print JSON instead of text"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ashctl", description="Snapshot layers of package operations on btrfs.")
    p.add_argument("--root", default="/", help="the target root (default: /)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--version", action=_Version, help="print the version and exit")
    p.add_argument("--json", action="store_true", help="print JSON (status, list, show, diff)")
    sub = p.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        title="commands",
        metavar="COMMAND",
        help="what to do (`ashctl COMMAND --help` tells more)",
    )
    sub.add_parser("setup", help="create the store and install the hooks")
    s = sub.add_parser("status", help="the deployment's layer, drift, pending reboot")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON)
    s = sub.add_parser("list", help="all layers")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON)
    sub.add_parser("tree", help="the layer tree, the deployment marked")
    s = sub.add_parser("show", help="one layer in full")
    s.add_argument("layer", metavar="LAYER", type=_layer_ref, help=LAYER)
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON)
    s = sub.add_parser(
        "diff", help="package (and file) changes from A to B (default: A's parent to A)"
    )
    s.add_argument("a", metavar="A", type=_layer_ref, help=f"{LAYER}: the layer to compare from")
    s.add_argument(
        "b",
        metavar="B",
        type=_layer_ref,
        nargs="?",
        help=f"{LAYER}: the layer to compare to (default: A, from its parent)",
    )
    s.add_argument("--files", action="store_true", help="also list the changed files")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON)
    s = sub.add_parser(
        "run",
        help="one transaction around any command",
        description="Run CMD as one transaction: what it changes in the root becomes a layer"
        " (none when it changes nothing). Exits with CMD's exit code.",
    )
    s.add_argument("--name", help="the layer's name (default: $ASH_NAME, else the command line)")
    s.add_argument(
        "argv",
        metavar="-- CMD [ARG ...]",
        nargs=argparse.REMAINDER,
        help="the command to run and its arguments, after `--`",
    )
    s = sub.add_parser("rollback", help="make a layer the deployment")
    s.add_argument(
        "layer",
        metavar="LAYER",
        type=_layer_ref,
        nargs="?",
        help=f"{LAYER} (default: the parent of the deployment's layer)",
    )
    s = sub.add_parser(
        "remove",
        help="delete a leaf layer; an inner one of the deployment's line is removed by replaying"
        " the layers after it on its parent",
    )
    s.add_argument(
        "layer",
        metavar="LAYER",
        type=_layer_ref,
        help=f"{LAYER}: not pinned, not a deployment's layer",
    )
    s.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    s = sub.add_parser(
        "rebase", help="replay LAYER and the layers after it on the deployment's line onto BASE"
    )
    s.add_argument(
        "layer", metavar="LAYER", type=_layer_ref, help=f"{LAYER}: the first layer to replay"
    )
    s.add_argument(
        "--onto", metavar="BASE", type=_layer_ref, required=True, help=f"{LAYER}: the new base"
    )
    s.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    s = sub.add_parser(
        "try",
        help="run CMD (default: a shell) chrooted in a new deployment; the running root is"
        " not touched",
    )
    s.add_argument("--name", metavar="NAME", help="the name of the layer CMD makes")
    s.add_argument(
        "argv",
        metavar="-- CMD [ARG ...]",
        nargs=argparse.REMAINDER,
        help="the command to run and its arguments, after `--` (default: a shell)",
    )
    s = sub.add_parser(
        "deploy", help="make LAYER (a try's, or any) the deployment, at once or at next boot"
    )
    s.add_argument("layer", metavar="LAYER", type=_layer_ref, help=LAYER)
    s = sub.add_parser(
        "export", help="write the operations from the base to LAYER as a recipe (TOML)"
    )
    s.add_argument(
        "layer",
        metavar="LAYER",
        type=_layer_ref,
        nargs="?",
        help=f"{LAYER} (default: the deployment's layer)",
    )
    s.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default="recipe.toml",
        help="the recipe's path; drift goes in bundles beside it (default: recipe.toml)",
    )
    s = sub.add_parser(
        "apply", help="run a recipe's operations in the root (--root) with the real managers"
    )
    s.add_argument("recipe", metavar="RECIPE", help="a recipe `ashctl export` wrote")
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="list every command, file written and path removed; run and mount nothing",
    )
    s = sub.add_parser(
        "prune", help="delete the snapshots of layers by retention; their records stay"
    )
    s.add_argument(
        "--keep", type=int, metavar="N", help="keep the newest N layers (default: ash.toml's)"
    )
    s.add_argument(
        "--keep-days",
        type=float,
        metavar="DAYS",
        help="keep layers newer than this many days (default: ash.toml's)",
    )
    s.add_argument(
        "--max-size",
        metavar="SIZE",
        help="prune the oldest until the layers hold at most SIZE, e.g. 20G (default: ash.toml's)",
    )
    s.add_argument(
        "--dry-run", action="store_true", help="say which layers would go; delete nothing"
    )
    s = sub.add_parser("doctor", help="check the store; --repair mends it")
    s.add_argument(
        "--repair",
        action="store_true",
        help="mend what it finds: a lost or corrupt database rebuilt from the manifests,"
        " a snapshot without a record recorded, a record without a snapshot kept as pruned,"
        " a rollback cut short finished or undone, an unused unchanged deployment deleted",
    )
    for name in ("pin", "unpin"):
        s = sub.add_parser(name, help=f"{name} a layer (pinned layers are never pruned)")
        s.add_argument("layer", metavar="LAYER", type=_layer_ref, help=LAYER)
    s = sub.add_parser(
        "boot",
        help="how the machine boots, and the boot menu's entries (GRUB)",
        description="Show what setup found about the boot loader and the menu ashlayers keeps"
        " for it: the deployment the next boot starts, the previous one, recent layers.",
    )
    s.add_argument("--update", action="store_true", help="rewrite the boot menu first")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON)
    return p


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=None, separators=(",", ":")) + "\n")


def _line(layer: Layer, head: int | None) -> str:
    from ashcore.sizes import human

    mark = "*" if layer.id == head else " "
    pin = " [pinned]" if layer.pinned else ""
    size = "-" if layer.status == Status.PRUNED else human(layer.size)
    return (
        f"{mark}{layer.id:>5}  {layer.created[:19]}  {layer.status.value:<11} {size:>6}  "
        f"{escaped(layer.name)}{pin}  ({layer.packages.summary()})"
    )


def _head(target: Target) -> int | None:
    if (copy := _throwaway(target)) is not None:
        return copy
    return target.store.head(target.deployment().uuid)[0]


def _throwaway(target: Target) -> int | None:
    """The layer this system runs a throwaway copy of (booted from the menu), or None."""
    if target.root != "/":
        return None
    from ashcore.boot import throwaway_layer

    return throwaway_layer()


SHOWN = 20  # drifted paths `status` lists


def _free(root: str) -> int:
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def cmd_status(target: Target, args: argparse.Namespace) -> int:
    from ashcore.drift import drift_since_head
    from ashcore.lifecycle import running
    from ashcore.prune import total_size
    from ashcore.rollback import interrupted, next_boot, pending_reboot
    from ashcore.sizes import human
    from ashcore.trial import tries

    if (copy := _throwaway(target)) is not None:
        if args.json:
            _print_json({"layer": copy, "throwaway_boot": True, "next_boot": next_boot(target)})
        else:
            print(f"layer: {copy}, booted from the menu as a throwaway copy: nothing is kept")
        return 0
    from ashcore.data import places

    dep = target.deployment()
    data_places = places(target)
    head, checked, late_until = target.store.head_state(dep.uuid)
    drift = False
    changed: list[str] = []
    if head is not None:
        with target.store.locked(target.config.lock_timeout):
            changed, _, probe = drift_since_head(
                target, head, checked, late_until=late_until, limit=SHOWN + 1
            )
            target.fs.delete(probe)
            drift = bool(changed)
    pending = target.store.pending()
    pending_json = None
    if pending is not None:
        pending_json = {
            "id": pending["id"],
            "name": pending["name"],
            "command": pending["command"],
            "manager": pending["manager"],
            "pid": pid_of(pending["owner"]),
            "alive": running(target, pending),
        }
    tried = tries(target)
    status = {
        "layer": head,
        "throwaway_boot": False,
        "pending_reboot": pending_reboot(target),
        "next_boot": next_boot(target),
        "drift": drift,
        "drifted": [escaped(p) for p in changed[:SHOWN]] if drift else [],
        "pending": pending_json,
        "interrupted_rollback": interrupted(target) is not None,
        "tries": [{"deployment": name, "layer": layer} for name, layer in tried],
        "size": (held := total_size(target.store.layers())),
        "free": (free := _free(target.root)),
        "data": {"/" + p.path: p.state for p in data_places if p.state != "absent"},
    }
    if args.json:
        _print_json(status)
    else:
        print(f"layer: {head if head is not None else '(none)'}")
        print(f"drift: {'yes, changes since that layer' if drift else 'no'}")
        print(f"layers hold: {human(held)}, free: {human(free)}")
        for path in changed[:SHOWN] if drift else []:
            print(f"  /{shortened(escaped(path))}")
        if drift and len(changed) > SHOWN:
            print("  ... and more (`ashctl run` or the next operation keeps them as a layer)")
        if status["pending_reboot"]:
            nxt = status["next_boot"]
            print(
                "pending reboot: the next boot starts "
                + (f"layer {nxt}" if nxt is not None else "another deployment")
            )
        if status["interrupted_rollback"]:
            print("rollback: interrupted (`ashctl doctor --repair` finishes or undoes it)")
        for name, layer in tried:
            print(
                f"try {name}: "
                + (
                    f"waits with layer {layer} (`ashctl deploy {layer}` or `ashctl remove {layer}`)"
                    if layer is not None
                    else "nothing made in it yet (running, or cut short: see `ashctl doctor`)"
                )
            )
        if pending_json:
            state = "running" if pending_json["alive"] else "interrupted (run `ashctl doctor`)"
            print(f"pending: {escaped(pending_json['command'])} ({state})")
        shown = [p for p in data_places if p.state != "absent"]
        if shown:
            print("users' data (never in a layer, never rolled back):")
        for place in shown:
            print(f"  {escaped(place.describe())}")
    return 0


def cmd_list(target: Target, args: argparse.Namespace) -> int:
    if args.json:
        sys.stdout.write(target.store.layers_json() + "\n")
        return 0
    head = _head(target)
    for layer in target.store.layers():
        print(_line(layer, head))
    return 0


def cmd_tree(target: Target, args: argparse.Namespace) -> int:
    from ashcore.sizes import human

    layers = target.store.layers()
    head = _head(target)
    children: dict[int | None, list[Layer]] = {}
    ids = {layer.id for layer in layers}
    for layer in layers:
        children.setdefault(layer.parent if layer.parent in ids else None, []).append(layer)

    # Depth first, without recursion (a history is thousands of layers deep); a straight
    # chain stays in its column, as `git log --graph` draws it: only a fork indents.
    stack = [(layer, "", "") for layer in reversed(children.get(None, []))]
    while stack:
        layer, lead, below = stack.pop()
        mark = "  <- deployment" if layer.id == head else ""
        name = escaped(layer.name)
        size = "" if layer.status == Status.PRUNED else f" {human(layer.size)}"
        print(f"{lead}{layer.id} {name} [{layer.status.value}{size}]{mark}")
        kids = children.get(layer.id, [])
        if len(kids) == 1:
            stack.append((kids[0], below, below))
            continue
        for i in reversed(range(len(kids))):
            last = i == len(kids) - 1
            stack.append(
                (kids[i], below + ("└─ " if last else "├─ "), below + ("   " if last else "│  "))
            )
    return 0


def cmd_show(target: Target, args: argparse.Namespace) -> int:
    layer = target.store.find(args.layer)
    if args.json:
        _print_json(layer.to_json())
        return 0
    from ashcore.sizes import human

    for key, value in layer.to_json().items():
        if key == "size" and layer.status != Status.PRUNED:
            print(f"size: {human(layer.size)} (added over its parent)")
        elif key not in ("packages", "size") and value is not None:
            print(f"{key}: {escaped(str(value))}")
    _print_delta(layer.packages)
    return 0


def _print_delta(delta: PackageDelta) -> None:
    for name, version in delta.added:
        print(f"  + {name} {version}")
    for name, version in delta.removed:
        print(f"  - {name} {version}")
    for name, old, new in delta.upgraded:
        print(f"  ^ {name} {old} -> {new}")
    for name, old, new in delta.downgraded:
        print(f"  v {name} {old} -> {new}")


def cmd_diff(target: Target, args: argparse.Namespace) -> int:
    from ashcore.diff import diff_layers

    a = target.store.find(args.a)
    if args.b is None:
        if a.parent is None:
            raise UsageError(f"layer {a.id} has no parent", hint="give two layers")
        a, b = target.store.get(a.parent), a
    else:
        b = target.store.find(args.b)
    packages, files = diff_layers(target, a, b, files=args.files)
    if args.json:
        out: dict[str, Any] = {"from": a.id, "to": b.id, "packages": packages}
        if files is not None:
            out["files"] = files
        _print_json(out)
        return 0
    print(f"from layer {a.id} to layer {b.id}:")
    for manager, delta in packages.items():
        if not isinstance(delta, dict):  # diff.UNKNOWN
            print(f" {manager}: unknown (its package database could not be read)")
            continue
        print(f" {manager}:")
        _print_delta(PackageDelta.from_json(delta))
    if files is not None:
        for path in files:
            print(f"  /{escaped(path)}")
    return 0


def cmd_run(target: Target, args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("no command to run", hint="ashctl run [--name NAME] -- CMD...")
    name = check_name(args.name) if args.name is not None else os.environ.get("ASH_NAME") or None
    op = Operation(
        plugin="run", manager=None, argv=tuple(argv), owner=owner_of(os.getpid()), name=name
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
        from ashcore.boot import refresh_quietly

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
    from ashcore.prune import delete_layer
    from ashcore.replay import branch
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
        head = _head(target)
        line = [c for c in children if head is not None and _on_line(target, c, head)]
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
    return _replay(target, base, line[0], args.dry_run, f"removed layer {layer.id}")


def _on_line(target: Target, layer: Layer, head: int) -> bool:
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
    path, layer, code = trial(target, argv, name)
    if layer is None:
        print("nothing changed in the try: removed it", file=sys.stderr)
    else:
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
    from ashcore.recipe import export

    if args.layer is not None:
        last = target.store.find(args.layer)
    else:
        head = _head(target)
        if head is None:
            raise UsageError("the deployment has no layer yet", hint="name a layer")
        last = target.store.get(head)
    for path in export(target, last, args.output):
        print(f"wrote {path}")
    return 0


def cmd_apply(target: Target, args: argparse.Namespace) -> int:
    from ashcore.recipe import apply

    count = apply(target, args.recipe, lambda m: print(m, flush=True), dry_run=args.dry_run)
    print(f"{'would apply' if args.dry_run else 'applied'} {count} operations to {target.root}")
    return 0


def cmd_rebase(target: Target, args: argparse.Namespace) -> int:
    first = target.store.find(args.layer)
    base = target.store.find(args.onto)
    return _replay(target, base, first, args.dry_run, f"rebased onto layer {base.id}")


def _replay(target: Target, base: Layer, first: Layer, dry_run: bool, done: str) -> int:
    from ashcore.replay import foresee_dissolved, plan, rebuild

    if dry_run:
        steps = plan(target, first)
        print(f"would rebuild the deployment on layer {base.id} ({escaped(base.name)}):")
        for step in steps:
            why = foresee_dissolved(target, base, step)
            if why is not None:
                print(f"  would dissolve {step.describe()} ({why})")
            else:
                print(f"  would replay {step.describe()}")
        replaced = ", ".join(str(step.layer.id) for step in steps)
        print(f"layers {replaced} would be replaced (kept as the old line until pruned)")
        return 0

    def say(message: str) -> None:
        print(message, flush=True)

    outcome = rebuild(target, base, first, say)
    when = "at the next boot" if outcome.at_reboot else "now"
    print(
        f"{done}: {len(outcome.made)} layers replayed, {len(outcome.dissolved)} dissolved;"
        f" takes effect {when} (the old line stays until pruned)"
    )
    for old, why in outcome.dissolved:
        print(f'dissolved: "{escaped(old.name)}" ({why})')
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
    from ashcore.layers import write_manifest
    from ashcore.ondisk import read_json

    layer = target.store.find(args.layer)
    pinned = args.command == "pin"
    with target.store.locked(target.config.lock_timeout):
        target.store.set_pinned(layer.id, pinned)
        manifest = read_json(target.store.manifest_path(layer.id)) or {}
        updated = target.store.get(layer.id)
        write_manifest(
            target.store,
            updated,
            manifest.get("plugin"),
            manifest.get("deployment"),
            manifest.get("installed"),
        )
    print(f"{'pinned' if pinned else 'unpinned'} layer {layer.id} ({layer.name})")
    return 0


def cmd_boot(target: Target, args: argparse.Namespace) -> int:
    from ashcore import boot
    from ashcore.ondisk import read_json

    found = boot.load(target)
    if found is None:
        data = read_json(os.path.join(boot.boot_dir(target), "boot.json"))
        why = data.get("why") if isinstance(data, dict) else None
        message = why or "setup has not looked at the boot loader (run `ashctl setup`)"
        if args.json:
            _print_json({"loader": "none", "why": message, "entries": []})
        else:
            print(f"boot: {message}")
        return 0
    if args.update:
        with target.store.locked(target.config.lock_timeout):
            made = boot.refresh(target) or []
    else:
        made = boot.entries(target, target.config.boot_entries)
    rows = [
        {
            "key": e.key,
            "title": e.title,
            "subvolume": e.subvolume,
            "kernel": e.kernel,
            "layer": e.layer,
        }
        for e in made
    ]
    if args.json:
        _print_json(
            {
                "loader": found.loader,
                "why": found.why,
                "menu": boot.menu_path(target),
                "entries": rows,
            }
        )
        return 0
    print(f"boot: {found.why}")
    print(f"menu: {boot.menu_path(target)}")
    for e in made:
        print(f"  {e.key:<10} {escaped(e.title)}\n             /{e.subvolume}, kernel {e.kernel}")
    return 0


def cmd_setup(target: Target, args: argparse.Namespace) -> int:
    from ashcore.setup import setup

    for line in setup(target):
        print(line)
    return 0


def _settle(target: Target, timeout: float = 30.0) -> None:
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


COMMANDS = {
    "setup": cmd_setup,
    "status": cmd_status,
    "list": cmd_list,
    "tree": cmd_tree,
    "show": cmd_show,
    "diff": cmd_diff,
    "run": cmd_run,
    "rollback": cmd_rollback,
    "remove": cmd_remove,
    "rebase": cmd_rebase,
    "export": cmd_export,
    "try": cmd_try,
    "deploy": cmd_deploy,
    "apply": cmd_apply,
    "prune": cmd_prune,
    "doctor": cmd_doctor,
    "pin": cmd_pin,
    "unpin": cmd_pin,
    "boot": cmd_boot,
}
READING = {"status", "list", "tree", "show", "diff", "export", "boot"}
"""Commands that change nothing: the only ones a throwaway boot of a layer offers."""
CHANGES_LAYERS = {"remove", "rebase", "prune", "apply", "doctor", "pin", "unpin"}
"""Commands after which the boot menu is rewritten (its layers); rollback and deploy rewrite
it themselves, the hooks' helper after each layer."""


def _finish_switch(root: str) -> None:
    """A rollback killed while it switched the root's mounts left them half moved (the store
    among them): finish the switch before anything looks at the root."""
    from ashcore.deployments import finish_swap, staging_path

    if os.path.lexists(staging_path(root)) and finish_swap(root):
        log.info("ashctl: finished switching %s, which an interrupted rollback began", root)


def _refuse_in_throwaway(args: argparse.Namespace) -> None:
    from ashcore.boot import throwaway_layer

    if args.command in READING or os.path.realpath(args.root) != "/":
        return
    layer = throwaway_layer()
    if layer is not None:
        raise UsageError(
            f"this boot is a throwaway copy of layer {layer} (from the boot menu): nothing"
            " here is kept",
            hint="boot the deployment to change layers, or `ashctl rollback "
            f"{layer}` there to make this layer the deployment",
        )


def _needs_root(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise UsageError(
            f"`ashctl {args.command}` needs root: the store and its snapshots are root's",
            hint=f"run: sudo ashctl {args.command} ...",
        )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = (
        "--debug" in args_list[: args_list.index("run")]
        if "run" in args_list
        else "--debug" in args_list
    )
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    try:
        args = _parser().parse_args(args_list)
        _needs_root(args)
        _finish_switch(args.root)
        _refuse_in_throwaway(args)
        target = Target(args.root)
        try:
            if args.command != "setup":
                _settle(target)
            return COMMANDS[args.command](target, args)
        except sqlite3.Error as e:
            raise explain(e, target.store.path) from e
        finally:
            dry_run = getattr(args, "dry_run", False)  # a dry run writes nothing, the menu too
            if args.command in CHANGES_LAYERS and not dry_run and target.store.exists():
                from ashcore.boot import refresh_quietly

                refresh_quietly(target)
    except AshError as e:
        if debug:
            log.exception("ashctl: error")
        sys.stderr.write(f"ashctl: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ashctl: interrupted\n")
        return 130
    except BrokenPipeError:  # `ashctl tree | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        if debug:
            raise
        sys.stderr.write(
            f"ashctl: internal error: {type(e).__name__}: {e} (run with --debug for details)\n"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
