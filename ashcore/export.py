"""Export: a line of layers written as a recipe (the format is ashcore/recipe.py's), each
drift or `run` layer beside it as a tar bundle of the paths it changed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

from ashcore.confined import kept_out
from ashcore.drift import manager_state
from ashcore.errors import BackendError, UsageError
from ashcore.model import Layer
from ashcore.ondisk import write_all, write_new_file
from ashcore.recipe import CHUNK, VERSION, keep_out_of
from ashcore.steps import steps_of
from ashcore.target import Target
from ashcore.text import escaped


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
    labels = store.labels()
    stem = out[: -len(".toml")] if out.endswith(".toml") else out
    parts = [
        "# ashlayers recipe: the operations from the base to layer"
        f" {last.id}; `ashctl apply` runs them",
        f"version = {VERSION}",
        f"base = {_string(line[0].name)}",
    ]
    for step in steps:
        parts += ["", "[[operation]]", f"layer = {step.layer.id}"]
        if step.pair is not None:
            parts.append(f"# layers {step.pair.failed.id} (failed) and {step.layer.id}, as one")
        parts.append(f"name = {_string(step.name)}")
        if step.layer.id in labels:
            parts.append(f"labels = [{', '.join(_string(x) for x in labels[step.layer.id])}]")
        if step.argv is not None:
            parts.append(f"manager = {_string(step.layer.manager or '')}")
            parts.append(f"command = [{', '.join(_string(a) for a in step.argv)}]")
            continue
        bundle = f"{stem}.{step.layer.id}.tar"
        removed, digest = _bundle(target, step.layer, bundle)
        written.append(bundle)
        parts.append(f"files = {_string(os.path.basename(bundle))}")
        parts.append(f"sha256 = {_string(digest)}")
        parts.append(f"remove = [{', '.join(_string(p) for p in removed)}]")
    text = ("\n".join(parts) + "\n").encode()
    write_new_file(out, lambda fd: write_all(fd, text))
    return [out, *written]


def _bundle(target: Target, layer: Layer, bundle: str) -> tuple[list[str], str]:
    """Write the paths `layer` added or changed as a tar at `bundle` (readable by root only:
    drift may hold secrets); return those it removed, and the bundle's sha256. What is in a
    place a recipe never touches (/run of a root whose /run is no mount, the store, the data
    places) is left out: `apply` would refuse the bundle for it."""
    assert layer.parent is not None
    old, new = target.store.layer_path(layer.parent), target.store.layer_path(layer.id)
    keep_out = keep_out_of(target.root, target.store.path, target.config.data)
    changed = sorted(
        p
        for p in target.fs.changed_paths(old, new)
        if not manager_state(p) and kept_out(p, keep_out) is None
    )
    present = [p for p in changed if os.path.lexists(os.path.join(new, p))]
    removed = [p for p in changed if not os.path.lexists(os.path.join(new, p))]
    listing = b"".join(os.fsencode(p) + b"\0" for p in present)
    argv = ["tar", "-c", "-f", "-", "--null", "--no-recursion", "--numeric-owner", "--xattrs"]

    def fill(fd: int) -> str:
        result = subprocess.run(
            [*argv, "-C", new, "-T", "-"], input=listing, stdout=fd, stderr=subprocess.PIPE
        )
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()[-200:]
            raise BackendError(f"cannot write {bundle}: {escaped(message)}")
        os.lseek(fd, 0, os.SEEK_SET)
        digest = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
        return digest.hexdigest()

    return removed, write_new_file(bundle, fill, mode=0o600)


