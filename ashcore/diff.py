"""What changed between two layers: packages (from the manifests) and files.

Files come from a btrfs send stream (fast: it walks only what differs), or from the slow
generic walk (ashcore/treecompare.py) when send cannot name them.
"""

from __future__ import annotations

from typing import Any

from ashcore.drift import noise_filter
from ashcore.errors import UsageError
from ashcore.model import Layer, PackageDelta, Status, natural_compare
from ashcore.ondisk import read_json
from ashcore.target import Target

UNKNOWN = "unknown"  # a manager's change in a diff when its database could not be read


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
