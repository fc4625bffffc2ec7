"""`ashctl`: list, show, diff, roll back, prune and repair layers; set a root up.

Exit codes: 0 success, 1 failure, 2 usage; `run` exits with its command's code (127 or 126,
as a shell's, when the command cannot start). Errors are one line; --debug adds a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from ashcore.blame import cmd_blame
from ashcore.commands import (
    cmd_apply,
    cmd_deploy,
    cmd_doctor,
    cmd_export,
    cmd_pin,
    cmd_prune,
    cmd_rebase,
    cmd_remove,
    cmd_rollback,
    cmd_run,
    cmd_setup,
    cmd_try,
    settle,
)
from ashcore.errors import AshError, UsageError
from ashcore.fleet.commands import add_parsers, add_registry_options, cmd_pull, cmd_push
from ashcore.labels import cmd_label
from ashcore.show import (
    cmd_boot,
    cmd_diff,
    cmd_list,
    cmd_show,
    cmd_status,
    cmd_tree,
)
from ashcore.squash import cmd_squash
from ashcore.storedb import explain
from ashcore.target import Target

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
    p.add_argument(
        "--json", action="store_true", help="print JSON (status, list, show, diff, blame, label)"
    )
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
    s = sub.add_parser("tree", help="the layer tree, the deployment marked")
    s.add_argument(
        "--all", action="store_true", help="also the lines a replay replaced (folded otherwise)"
    )
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
        "blame",
        help="the layers that changed PATH, newest first, and the package that owns it",
        description="List the layers on the deployment's line (--all: on every branch) that"
        " changed PATH (or, for a folder, what it holds), newest first, from the layers'"
        " recorded change lists; with the packages that own PATH in each, as its manager"
        " says (asked with the root's own tools).",
    )
    s.add_argument("path", metavar="PATH", help="a path as the root sees it, e.g. /etc/hosts")
    s.add_argument("--all", action="store_true", help="every branch, not only the deployment's")
    s.add_argument(
        "--no-owners",
        action="store_true",
        help="do not ask the managers which package owns PATH (a process per layer found)",
    )
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON)
    s = sub.add_parser(
        "label",
        help="name the line up to LAYER (a purpose: desktop, mail); without arguments, list",
        description="Put the label NAME on LAYER: accepted wherever a LAYER is, shown by list,"
        " tree and status, kept in export, moved by a rebase. Without arguments: the labels.",
    )
    s.add_argument("layer", metavar="LAYER", nargs="?", type=_layer_ref, help=LAYER)
    s.add_argument("label", metavar="NAME", nargs="?", help="the label: letters, digits, . _ + -")
    s.add_argument("--remove", action="store_true", help="take the label NAME away")
    s.add_argument("--force", action="store_true", help="move NAME here from another layer")
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
        "rebase",
        help="replay LAYER and the layers after it on its line onto BASE",
        description="Replay FIRST and the layers after it onto BASE with the real managers:"
        " up to the deployment's layer when FIRST is on the deployment's line, else up to the"
        " tip of FIRST's line (FIRST..LAST names the tip where that line branches). The result"
        " is a new branch; the deployment moves to it only when it was the deployment's line,"
        " or with --deploy.",
    )
    s.add_argument(
        "layer",
        metavar="FIRST[..LAST]",
        type=_layer_ref,
        help=f"{LAYER}: the first layer to replay (..LAST: the last)",
    )
    s.add_argument(
        "--onto", metavar="BASE", type=_layer_ref, required=True, help=f"{LAYER}: the new base"
    )
    s.add_argument(
        "--deploy", action="store_true", help="make the result the deployment, whatever line"
    )
    s.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    s = sub.add_parser(
        "squash",
        help="make one layer of the run A..B on the deployment's line",
        description="One layer of the layers A to B on the deployment's line: B's state, the"
        " commands in order, the package delta of the whole run. The old layers keep their"
        " records (replaced); the layers after B are recorded again on it. Nothing is run.",
    )
    s.add_argument("a", metavar="A", type=_layer_ref, help=f"{LAYER}: the first of the run")
    s.add_argument("b", metavar="B", type=_layer_ref, help=f"{LAYER}: the last of the run")
    s.add_argument("--name", metavar="NAME", help="its name (default: the names of the run)")
    s.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    s = sub.add_parser(
        "try",
        help="run CMD (default: a shell) chrooted in a new deployment; the running root is"
        " not touched",
    )
    s.add_argument("--name", metavar="NAME", help="the name of the layer CMD makes")
    s.add_argument(
        "--label", metavar="LABEL", help="label the try's last layer (see `ashctl label`)"
    )
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
    s.add_argument(
        "recipe", metavar="RECIPE", help="a recipe `ashctl export` wrote, or a pushed line's REF"
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="list every command, file written and path removed; run and mount nothing",
    )
    s.add_argument(
        "--from",
        dest="first",
        type=int,
        default=1,
        metavar="N",
        help="start at operation N (the rest of a recipe that stopped there)",
    )
    add_registry_options(s)
    add_parsers(sub, _layer_ref)
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


COMMANDS = {
    "setup": cmd_setup,
    "status": cmd_status,
    "list": cmd_list,
    "tree": cmd_tree,
    "show": cmd_show,
    "diff": cmd_diff,
    "blame": cmd_blame,
    "label": cmd_label,
    "run": cmd_run,
    "rollback": cmd_rollback,
    "remove": cmd_remove,
    "rebase": cmd_rebase,
    "squash": cmd_squash,
    "export": cmd_export,
    "try": cmd_try,
    "deploy": cmd_deploy,
    "apply": cmd_apply,
    "push": cmd_push,
    "pull": cmd_pull,
    "prune": cmd_prune,
    "doctor": cmd_doctor,
    "pin": cmd_pin,
    "unpin": cmd_pin,
    "boot": cmd_boot,
}
READING = {"status", "list", "tree", "show", "diff", "blame", "export", "boot", "push"}
"""Commands that change nothing: the only ones a throwaway boot of a layer offers."""
CHANGES_LAYERS = {
    "remove",
    "rebase",
    "squash",
    "prune",
    "apply",
    "doctor",
    "pin",
    "unpin",
    "pull",
}
"""Commands after which the boot menu is rewritten (its layers); rollback and deploy rewrite
it themselves, the hooks' helper after each layer."""


def _finish_switch(root: str) -> None:
    """A rollback killed while it switched the root's mounts left them half moved (the store
    among them): finish the switch before anything looks at the root."""
    from ashcore.deployments import finish_swap, staging_path

    if os.path.lexists(staging_path(root)) and finish_swap(root):
        log.info("ashctl: finished switching %s, which an interrupted rollback began", root)


def _refuse_in_throwaway(args: argparse.Namespace) -> None:
    from ashcore.boot.state import throwaway_layer

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
                settle(target)
            return COMMANDS[args.command](target, args)
        except sqlite3.Error as e:
            raise explain(e, target.store.path) from e
        finally:
            dry_run = getattr(args, "dry_run", False)  # a dry run writes nothing, the menu too
            if args.command in CHANGES_LAYERS and not dry_run and target.store.exists():
                from ashcore.boot.menu import refresh_quietly

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
