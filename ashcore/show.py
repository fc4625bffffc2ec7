"""ashctl's reading commands and how they render: status, list, tree, show, diff, boot."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from ashcore.errors import UsageError
from ashcore.model import Layer, PackageDelta, Status
from ashcore.process import pid_of
from ashcore.target import Target
from ashcore.text import escaped, shortened

log = logging.getLogger("ashctl")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=None, separators=(",", ":")) + "\n")


def labelled(labels: list[str]) -> str:
    """A layer's labels after its name: " (desktop, mail)", or nothing."""
    return f" ({', '.join(labels)})" if labels else ""


def layer_line(layer: Layer, head: int | None, labels: list[str] | None = None) -> str:
    from ashcore.sizes import human

    mark = "*" if layer.id == head else " "
    pin = labelled(labels or []) + (" [pinned]" if layer.pinned else "")
    size = "-" if layer.status == Status.PRUNED else human(layer.size)
    state = "replaced" if layer.replaced_by is not None else layer.status.value
    return (
        f"{mark}{layer.id:>5}  {layer.created[:19]}  {state:<11} {size:>6}  "
        f"{escaped(layer.name)}{pin}  ({layer.packages.summary()})"
    )


def head_of(target: Target) -> int | None:
    if (copy := throwaway(target)) is not None:
        return copy
    return target.store.head(target.deployment().uuid)[0]


def throwaway(target: Target) -> int | None:
    """The layer this system runs a throwaway copy of (booted from the menu), or None."""
    if target.root != "/":
        return None
    from ashcore.boot.state import throwaway_layer

    return throwaway_layer()


SHOWN = 20  # drifted paths `status` lists


def free_bytes(root: str) -> int:
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def cmd_status(target: Target, args: argparse.Namespace) -> int:
    from ashcore.drift import drift_since_head
    from ashcore.prune import total_size
    from ashcore.recovery import running
    from ashcore.rollback import interrupted, next_boot, pending_reboot
    from ashcore.sizes import human
    from ashcore.trial import tries

    if (copy := throwaway(target)) is not None:
        if args.json:
            print_json({"layer": copy, "throwaway_boot": True, "next_boot": next_boot(target)})
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
    head_labels = target.store.labels().get(head, []) if head is not None else []
    status = {
        "layer": head,
        "labels": head_labels,
        "throwaway_boot": False,
        "pending_reboot": pending_reboot(target),
        "next_boot": next_boot(target),
        "drift": drift,
        "drifted": [escaped(p) for p in changed[:SHOWN]] if drift else [],
        "pending": pending_json,
        "interrupted_rollback": interrupted(target) is not None,
        "tries": [{"deployment": name, "layer": layer} for name, layer in tried],
        "size": (held := total_size(target.store.layers())),
        "free": (free := free_bytes(target.root)),
        "data": {"/" + p.path: p.state for p in data_places if p.state != "absent"},
    }
    if args.json:
        print_json(status)
    else:
        print(f"layer: {head if head is not None else '(none)'}{labelled(head_labels)}")
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
    head = head_of(target)
    labels = target.store.labels()
    for layer in target.store.layers():
        print(layer_line(layer, head, labels.get(layer.id)))
    return 0


def cmd_tree(target: Target, args: argparse.Namespace) -> int:
    from ashcore.sizes import human

    layers = target.store.layers()
    head = head_of(target)
    labels = target.store.labels()
    folded = set() if args.all else _replaced_lines(layers)
    layers = [layer for layer in layers if layer.id not in folded]
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
        name = escaped(layer.name) + labelled(labels.get(layer.id, []))
        size = "" if layer.status == Status.PRUNED else f" {human(layer.size)}"
        state = "replaced" if layer.replaced_by is not None else layer.status.value
        print(f"{lead}{layer.id} {name} [{state}{size}]{mark}")
        kids = children.get(layer.id, [])
        if len(kids) == 1:
            stack.append((kids[0], below, below))
            continue
        for i in reversed(range(len(kids))):
            last = i == len(kids) - 1
            stack.append(
                (kids[i], below + ("└─ " if last else "├─ "), below + ("   " if last else "│  "))
            )
    if folded:
        print(f"({len(folded)} layers of replaced lines folded: `ashctl tree --all` shows them)")
    return 0


def _replaced_lines(layers: list[Layer]) -> set[int]:
    """The layers a replay replaced whose descendants were all replaced too: a replaced
    line, folded from the tree (a branch made on it since stays, with its ancestors)."""
    children: dict[int, list[int]] = {}
    for layer in layers:
        if layer.parent is not None:
            children.setdefault(layer.parent, []).append(layer.id)
    replaced = {layer.id for layer in layers if layer.replaced_by is not None}
    folded: set[int] = set()
    for layer in sorted(layers, key=lambda x: x.id, reverse=True):  # children first
        if layer.id in replaced and all(c in folded for c in children.get(layer.id, [])):
            folded.add(layer.id)
    return folded


def cmd_show(target: Target, args: argparse.Namespace) -> int:
    from ashcore.ondisk import read_json

    layer = target.store.find(args.layer)
    labels = target.store.labels().get(layer.id, [])
    manifest = read_json(target.store.manifest_path(layer.id))
    pulled = manifest.get("pulled") if isinstance(manifest, dict) else None
    pulled = pulled if isinstance(pulled, dict) else None
    if args.json:
        print_json(layer.to_json() | {"labels": labels} | ({"pulled": pulled} if pulled else {}))
        return 0
    if labels:
        print(f"labels: {', '.join(labels)}")
    from ashcore.sizes import human

    for key, value in layer.to_json().items():
        if key == "size" and layer.status != Status.PRUNED:
            print(f"size: {human(layer.size)} (added over its parent)")
        elif key not in ("packages", "size") and value is not None:
            print(f"{key}: {escaped(str(value))}")
    if pulled:
        print(
            f"pulled: from {escaped(str(pulled.get('from')))} (the sender's layer"
            f" {escaped(str(pulled.get('id')))}, artifact {escaped(str(pulled.get('digest')))})"
        )
    print_delta(layer.packages)
    return 0


def print_delta(delta: PackageDelta) -> None:
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
        print_json(out)
        return 0
    print(f"from layer {a.id} to layer {b.id}:")
    for manager, delta in packages.items():
        if not isinstance(delta, dict):  # diff.UNKNOWN
            print(f" {manager}: unknown (its package database could not be read)")
            continue
        print(f" {manager}:")
        print_delta(PackageDelta.from_json(delta))
    if files is not None:
        for path in files:
            print(f"  /{escaped(path)}")
    return 0


def cmd_boot(target: Target, args: argparse.Namespace) -> int:
    from ashcore.boot.menu import entries, refresh
    from ashcore.boot.state import boot_dir, load, menu_path
    from ashcore.ondisk import read_json

    found = load(target)
    if found is None:
        data = read_json(os.path.join(boot_dir(target), "boot.json"))
        why = data.get("why") if isinstance(data, dict) else None
        message = why or "setup has not looked at the boot loader (run `ashctl setup`)"
        if args.json:
            print_json({"loader": "none", "why": message, "entries": []})
        else:
            print(f"boot: {message}")
        return 0
    if args.update:
        with target.store.locked(target.config.lock_timeout):
            made = refresh(target) or []
    else:
        made = entries(target, target.config.boot_entries)
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
        print_json(
            {
                "loader": found.loader,
                "why": found.why,
                "menu": menu_path(target),
                "entries": rows,
            }
        )
        return 0
    print(f"boot: {found.why}")
    print(f"menu: {menu_path(target)}")
    for e in made:
        print(f"  {e.key:<10} {escaped(e.title)}\n             /{e.subvolume}, kernel {e.kernel}")
    return 0
