"""What changed between two layers: packages (from the manifests) and files.

Files come from a btrfs send stream (fast: it walks only what differs); `tree_changes` is the
slow generic walk the tests hold the fast path against.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ashcore.entries import same_entry
from ashcore.errors import UsageError
from ashcore.lifecycle import Target, noise_filter
from ashcore.model import Layer, PackageDelta, Status
from ashcore.ondisk import read_json

_PIECES = re.compile(r"(\d+)")
UNKNOWN = "unknown"  # a manager's change in a diff when its database could not be read


def natural_compare(a: str, b: str) -> int:
    """A version order good enough to tell an upgrade from a downgrade across layers."""

    def key(v: str) -> list[tuple[int, Any]]:
        return [(1, int(p)) if p.isdigit() else (0, p) for p in _PIECES.split(v) if p]

    ka, kb = key(a), key(b)
    return (ka > kb) - (ka < kb)


def diff_layers(
    target: Target, a: Layer, b: Layer, *, files: bool
) -> tuple[dict[str, Any], list[str] | None]:
    from ashcore.sets import delta_between, sets_of, unknown_between

    store = target.store
    packages: dict[str, Any] = {}
    sa, sb = sets_of(target, a.id), sets_of(target, b.id)
    if sa is not None and sb is not None:  # per manager, whatever made the layers between
        packages = {m: d.to_json() for m, d in delta_between(sa, sb).items()}
        # A manager whose database could not be read in either layer: its change is unknown.
        packages.update(dict.fromkeys(unknown_between(sa, sb), UNKNOWN))
        return packages, _files(target, a, b, files)
    ma = read_json(store.manifest_path(a.id)) or {}
    mb = read_json(store.manifest_path(b.id)) or {}
    if b.parent == a.id:
        packages[b.manager or "packages"] = b.packages.to_json()
    elif ma.get("installed") is not None and mb.get("installed") is not None:
        delta = PackageDelta.between(ma["installed"], mb["installed"], natural_compare)
        packages[mb.get("plugin") or "packages"] = delta.to_json()
    return packages, _files(target, a, b, files)


def _files(target: Target, a: Layer, b: Layer, files: bool) -> list[str] | None:
    if not files:
        return None
    for layer in (a, b):
        if layer.status == Status.PRUNED:
            raise UsageError(
                f"layer {layer.id} was pruned: its files are gone, its record stays",
                hint="drop --files for the package diff",
            )
    store = target.store
    return noise_filter(target.fs.changed_paths(store.layer_path(a.id), store.layer_path(b.id)), ())


def tree_changes(old: str, new: str) -> set[str]:
    """Paths added, removed, or changed in type, mode, owner, link target or content."""
    changed: set[str] = set()

    def walk(rel: str) -> None:
        a_dir, b_dir = os.path.join(old, rel), os.path.join(new, rel)
        a_names = (
            set(os.listdir(a_dir)) if os.path.isdir(a_dir) and not os.path.islink(a_dir) else set()
        )
        b_names = (
            set(os.listdir(b_dir)) if os.path.isdir(b_dir) and not os.path.islink(b_dir) else set()
        )
        for name in a_names | b_names:
            path = os.path.join(rel, name) if rel else name
            pa, pb = os.path.join(old, path), os.path.join(new, path)
            if name not in a_names or name not in b_names:
                changed.add(path)
                for side, names in ((pa, a_names), (pb, b_names)):
                    if name in names and os.path.isdir(side) and not os.path.islink(side):
                        for top, dirs, fnames in os.walk(side):
                            for n in dirs + fnames:
                                changed.add(
                                    os.path.relpath(
                                        os.path.join(top, n), side.rsplit(path, 1)[0] or "/"
                                    )
                                )
                continue
            if not same_entry(pa, pb):
                changed.add(path)
            if os.path.isdir(pb) and not os.path.islink(pb):
                walk(path)

    walk("")
    return changed
