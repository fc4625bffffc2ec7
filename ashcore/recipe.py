"""Export and apply: a line of layers as a small recipe of operations, to reproduce a system.

`ashctl export [LAYER] [-o FILE]` writes the operations from the base to LAYER (default: the
deployment's layer) as TOML:

    # ashlayers recipe
    version = 1
    base = "base"

    [[operation]]
    layer = 2
    name = "apt-get install htop"
    manager = "apt"
    command = ["apt-get", "install", "-y", "htop"]

    [[operation]]
    layer = 5
    name = "drift: etc/motd"
    files = "recipe.5.tar"          # the bundle beside the recipe: the paths it changed
    remove = ["etc/old.conf"]       # the paths it removed

A drift or `ashctl run` layer is carried as a tar bundle of the paths it changed (owners,
modes, times, links kept); its changes to a manager's own database are not (the managers
write those as they replay). A layer that can be neither (a script's, a failed one, one
whose snapshot was pruned) is refused with one line naming it.

`ashctl [--root PATH] apply RECIPE` runs the operations in order with the real managers,
chrooted into PATH (or in place on the running system), non-interactive; the bundles are
unpacked. In a root that is set up, each operation's hooks make its layer as always.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from collections.abc import Callable
from typing import Any

from ashcore.errors import BackendError, UsageError
from ashcore.lifecycle import Target, manager_state
from ashcore.model import Layer
from ashcore.replay import chroot_env, steps_of
from ashcore.text import escaped

VERSION = 1


def _string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def export(target: Target, last: Layer, out: str) -> list[str]:
    """Write the recipe of the line from the base to `last` at `out` (and its bundles);
    returns the files written."""
    store = target.store
    line: list[Layer] = []
    current: int | None = last.id
    while current is not None:
        layer = store.get(current)
        line.insert(0, layer)
        current = layer.parent
    if len(line) < 2:
        raise UsageError(f"layer {last.id} is a base: nothing to export", hint="name a later one")
    steps = steps_of(target, line[1:], "carried", "export up to the layer before it")
    written = []
    stem = out[: -len(".toml")] if out.endswith(".toml") else out
    parts = [
        "# ashlayers recipe: the operations from the base to layer"
        f" {last.id}; `ashctl apply` runs them",
        f"version = {VERSION}",
        f"base = {_string(line[0].name)}",
    ]
    for step in steps:
        parts += ["", "[[operation]]", f"layer = {step.layer.id}"]
        parts.append(f"name = {_string(step.layer.name)}")
        if step.argv is not None:
            parts.append(f"manager = {_string(step.layer.manager or '')}")
            parts.append(f"command = [{', '.join(_string(a) for a in step.argv)}]")
            continue
        bundle = f"{stem}.{step.layer.id}.tar"
        removed = _bundle(target, step.layer, bundle)
        written.append(bundle)
        parts.append(f"files = {_string(os.path.basename(bundle))}")
        parts.append(f"remove = [{', '.join(_string(p) for p in removed)}]")
    from ashcore.ondisk import write_atomic

    write_atomic(out, ("\n".join(parts) + "\n").encode())
    return [out, *written]


def _bundle(target: Target, layer: Layer, bundle: str) -> list[str]:
    """Write the paths `layer` added or changed as a tar at `bundle`; return those it removed."""
    assert layer.parent is not None
    old, new = target.store.layer_path(layer.parent), target.store.layer_path(layer.id)
    changed = sorted(p for p in target.fs.changed_paths(old, new) if not manager_state(p))
    present = [p for p in changed if os.path.lexists(os.path.join(new, p))]
    removed = [p for p in changed if not os.path.lexists(os.path.join(new, p))]
    listing = bundle + ".list"
    with open(listing, "wb") as f:
        f.write(b"".join(os.fsencode(p) + b"\0" for p in present))
    try:
        result = subprocess.run(
            [
                "tar",
                "-cf",
                bundle,
                "--null",
                "--no-recursion",
                "--numeric-owner",
                "--xattrs",
                "-C",
                new,
                "-T",
                listing,
            ],
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(listing)
    if result.returncode != 0:
        raise BackendError(f"cannot write {bundle}: {result.stderr.strip()[-200:]}")
    return removed


def load(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recipe at `path`, checked: (its header, its operations)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", hint="give a recipe file") from e
    except tomllib.TOMLDecodeError as e:
        raise UsageError(
            f"{path} is not TOML: {e}", hint="give a file `ashctl export` wrote"
        ) from e
    if data.get("version") != VERSION:
        raise UsageError(
            f"{path}: version {data.get('version')!r} is not {VERSION}",
            hint="export it again with this ashctl",
        )
    operations = data.get("operation", [])
    if not isinstance(operations, list):
        raise UsageError(f"{path}: [[operation]] entries expected", hint="see `ashctl export`")
    for i, op in enumerate(operations, 1):
        if not isinstance(op, dict):
            raise UsageError(f"{path}: operation {i} is not a table", hint="see `ashctl export`")
        removed = op.get("remove", [])
        if not isinstance(removed, list) or not all(
            isinstance(p, str) and p and not p.startswith("/") and ".." not in p.split("/")
            for p in removed
        ):
            raise UsageError(
                f"{path}: operation {i}: `remove` must list plain paths inside the root",
                hint="see `ashctl export`",
            )
        command, files = op.get("command"), op.get("files")
        ok_command = (
            isinstance(command, list) and command and all(isinstance(a, str) for a in command)
        )
        ok_files = isinstance(files, str) and "/" not in files and files not in ("", ".", "..")
        if ok_command == ok_files or not isinstance(op.get("name", ""), str):
            raise UsageError(
                f"{path}: operation {i} needs either a command (a list of words) or files"
                " (a bundle's name beside the recipe)",
                hint="see `ashctl export`",
            )
    return data, operations


def apply(target: Target, path: str, say: Callable[[str], None], *, dry_run: bool = False) -> int:
    """Run the recipe's operations in the target root; returns how many ran."""
    from ashcore.stage import mount_root_api, unmount_root_api

    _, operations = load(path)
    root = target.root
    folder = os.path.dirname(os.path.abspath(path))
    in_place = os.path.realpath(root) == "/"
    # Under a lease in the store's host folder: a kill leaves mounts doctor finds.
    lease = None if in_place or dry_run else mount_root_api(target)
    try:
        for number, op in enumerate(operations, 1):
            name = op.get("name") or "?"
            what = " ".join(op["command"]) if "command" in op else f"files {op['files']}"
            say(
                f"[{number}/{len(operations)}] {'would apply' if dry_run else 'applying'}"
                f' "{escaped(name)}": {escaped(what)}'
            )
            if dry_run:
                continue
            started = time.monotonic()
            if "command" in op:
                _run(root, in_place, op["command"], name)
            else:
                _unpack(root, os.path.join(folder, op["files"]), op.get("remove", []))
            say(f"      done in {time.monotonic() - started:.1f} s")
    finally:
        if lease is not None:
            unmount_root_api(lease)
    return len(operations)


def _run(root: str, in_place: bool, argv: list[str], name: str) -> None:
    env = chroot_env(name)
    full = argv if in_place else ["chroot", root, *argv]
    result = subprocess.run(
        full, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace"
    )
    if result.returncode != 0:
        lines = [x for x in (result.stderr or result.stdout).splitlines() if x.strip()]
        raise BackendError(
            f"`{' '.join(argv)}` failed (exit {result.returncode}): "
            + escaped(lines[-1] if lines else "no message"),
            hint="the operations before it were applied; fix the cause and apply the rest",
        )


def _unpack(root: str, bundle: str, removed: list[str]) -> None:
    if not os.path.isfile(bundle):
        raise UsageError(f"the bundle {bundle} is missing", hint="keep it beside the recipe")
    result = subprocess.run(
        ["tar", "-xpf", bundle, "--numeric-owner", "--xattrs", "--no-overwrite-dir", "-C", root],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BackendError(f"cannot unpack {bundle}: {result.stderr.strip()[-200:]}")
    for rel in sorted(removed, key=lambda p: p.count("/"), reverse=True):
        _remove_inside(root, rel)


def _remove_inside(root: str, rel: str) -> None:
    """Remove `rel` below `root` (a folder with all it holds), never anything outside it."""
    import shutil

    real = os.path.realpath(root)
    parent = os.path.realpath(os.path.join(real, os.path.dirname(rel)))
    if parent != real and not parent.startswith(real + "/"):
        return
    path = os.path.join(parent, os.path.basename(rel))
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
