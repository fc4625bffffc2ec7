"""The fleet's commands: `ashctl push`, `ashctl pull`, and `ashctl apply REF`."""

from __future__ import annotations

import argparse
import os
import sys

from ashcore.errors import UsageError
from ashcore.fleet.oci import Client
from ashcore.fleet.reference import Reference, parse_reference
from ashcore.target import Target
from ashcore.text import escaped

LAYER = "a layer id or name"


def _tls_verify(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError("--tls-verify takes true or false")


def add_registry_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--authfile",
        metavar="FILE",
        help="credentials, as containers-auth.json(5) (default:"
        " $REGISTRY_AUTH_FILE, then podman's and docker's files)",
    )
    s.add_argument(
        "--cert-dir",
        metavar="DIR",
        help="CA certificates (*.crt) to trust for the registry"
        " (default: /etc/containers/certs.d/HOST:PORT)",
    )
    s.add_argument(
        "--tls-verify",
        metavar="BOOL",
        type=_tls_verify,
        default=True,
        help="check the registry's TLS certificate (default: true; false also allows HTTP)",
    )


def add_parsers(sub: argparse._SubParsersAction, layer_ref: object) -> None:  # type: ignore[type-arg]
    s = sub.add_parser(
        "push",
        help="send the line from the base to LAYER to an OCI registry",
        description="Push the line of layers from the base to LAYER (default: the deployment's"
        " layer) to REF as one OCI artifact: per layer a btrfs send stream and its record,"
        " and the line's recipe. Only the blobs the registry lacks are uploaded.",
    )
    s.add_argument("args", metavar="[LAYER] REF", nargs="+", help=f"[{LAYER}] HOST:PORT/REPO:TAG")
    s.add_argument("--sign", metavar="KEY", help="sign the line with this gpg secret key")
    add_registry_options(s)
    s = sub.add_parser(
        "pull",
        help="receive a pushed line as layers (no switch)",
        description="Receive the layers of REF this store lacks, byte for byte, when it has the"
        " layer they are sent against; --base takes the line's base whole; --replay runs the"
        " line's recipe on the deployment with this root's managers instead.",
    )
    s.add_argument("ref", metavar="REF", help="HOST:PORT/REPO:TAG or HOST:PORT/REPO@sha256:...")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--base", action="store_true", help="receive the line's base whole if missing")
    how.add_argument("--replay", action="store_true", help="replay the line's recipe instead")
    s.add_argument("--deploy", action="store_true", help="deploy the line's tip once it is here")
    s.add_argument(
        "--trusted-key",
        metavar="FILE",
        action="append",
        default=[],
        help="accept only a line signed by this OpenPGP key (repeatable; adds to [fleet]"
        " trusted_keys)",
    )
    add_registry_options(s)


def client_for(ref: Reference, args: argparse.Namespace) -> Client:
    return Client(ref, tls_verify=args.tls_verify, cert_dir=args.cert_dir, auth_file=args.authfile)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def cmd_push(target: Target, args: argparse.Namespace) -> int:
    from ashcore.fleet.push import push
    from ashcore.show import head_of

    if len(args.args) > 2:
        raise UsageError("push takes [LAYER] REF", hint="e.g. ashctl push 7 host:5000/line:v1")
    ref = parse_reference(args.args[-1])
    if ref.digest:
        raise UsageError("push needs a tag, not a digest", hint="e.g. host:5000/line:v1")
    if len(args.args) == 2:
        last = target.store.find(args.args[0])
    else:
        head = head_of(target)
        if head is None:
            raise UsageError("the deployment has no layer yet", hint="name a layer")
        last = target.store.get(head)
    digest, moved = push(target, last, ref, client_for(ref, args), _say, sign_key=args.sign)
    print(
        f"pushed the line to layer {last.id} ({escaped(last.name)}) to {ref}@{digest}:"
        f" {moved.blobs} blobs uploaded ({_size(moved.bytes)}), {moved.skipped} already there"
    )
    return 0


def _keys(target: Target, extra: list[str]) -> tuple[str, ...]:
    root = target.root
    configured = tuple(os.path.join(root, k.lstrip("/")) for k in target.config.trusted_keys)
    return configured + tuple(os.path.abspath(k) for k in extra)


def cmd_pull(target: Target, args: argparse.Namespace) -> int:
    from ashcore.fleet.pull import pull

    ref = parse_reference(args.ref)
    tip, moved = pull(
        target,
        ref,
        client_for(ref, args),
        _say,
        keys=_keys(target, args.trusted_key),
        base=args.base,
        replay=args.replay,
    )
    if args.replay:
        print(
            f"replayed {ref} onto the deployment"
            + (
                f": layer {tip.id} is its tip"
                if tip
                else ": nothing changed (the deployment had it all)"
            )
        )
        return 0
    assert tip is not None
    print(
        f"pulled {ref}: tip is layer {tip.id} ({escaped(tip.name)}); {moved.blobs} layers"
        f" received ({_size(moved.bytes)}), {moved.skipped} were here"
    )
    if args.deploy:
        from ashcore.trial import deploy

        _, at_reboot = deploy(target, tip)
        print(f"deployed layer {tip.id}: takes effect {'at the next boot' if at_reboot else 'now'}")
    else:
        print(f"`ashctl deploy {tip.id}` makes it the deployment", file=sys.stderr)
    return 0


def apply_reference(target: Target, args: argparse.Namespace) -> int:
    """`ashctl apply REF`: the recipe a pushed line carries, run as a recipe file is."""
    from ashcore.fleet.pull import pull

    ref = parse_reference(args.recipe)
    if args.dry_run or args.first != 1:
        raise UsageError(
            "--dry-run and --from work on a recipe file", hint=f"`ashctl pull --replay {ref}`"
        )
    tip, _ = pull(target, ref, client_for(ref, args), _say, keys=_keys(target, []), replay=True)
    print(f"applied {ref} to {target.root}" + (f": layer {tip.id} is its tip" if tip else ""))
    return 0
