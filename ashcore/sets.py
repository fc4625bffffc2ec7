"""The installed set of every manager present in a layer, recorded in its manifest.

Every layer (a package operation's, drift, `ashctl run`, base, interrupted) records, under
`sets` in its manifest, `{plugin: {name: version}}` for each manager whose database is in its
snapshot, read through that plugin's database face. So a diff between any two layers is
right per manager, and a drift or `run` layer shows the packages it changed (a run with
ASH_SKIP=1, `dpkg -i` under `ashctl run`).

Reading every database costs tens of milliseconds (rpm's binding alone): it is done off the
managers' time, by the helper once its layer is described, by `ashctl` commands, or when a
diff first needs it; never by a hook's begin.
"""

from __future__ import annotations

import os

from ashcore.log import logger
from ashcore.model import PackageDelta
from ashcore.ondisk import read_json, write_json
from ashcore.registry import database_of, managers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.target import Target

log = logger(__name__)

Sets = dict[str, dict[str, str]]
WALK = 8  # layers up the tree that one call completes at most


def read_sets(path: str) -> Sets:
    """The installed set of each manager whose database is under `path`."""
    sets: Sets = {}
    for plugin in (m.name for m in managers()):
        face = database_of(plugin)
        if face is None:
            continue
        state = getattr(face, "state_paths", None)
        if state is not None and not any(
            os.path.lexists(os.path.join(path, rel)) for rel in state(path)
        ):
            continue
        try:
            sets[plugin] = face.read_installed(path)
        except Exception as e:  # one manager's broken database does not hide the others
            log.debug("cannot read the %s database in %s: %s", plugin, path, e)
    return sets


def sets_of(target: Target, layer_id: int) -> Sets | None:
    """The layer's sets: recorded, or read from its snapshot and recorded now. None when
    neither can be (no manifest, or its snapshot is gone)."""
    store = target.store
    manifest = read_json(store.manifest_path(layer_id))
    if not isinstance(manifest, dict):
        return None
    recorded = manifest.get("sets")
    if isinstance(recorded, dict):
        return recorded
    path = store.layer_path(layer_id)
    if not os.path.isdir(path):
        return None
    sets = read_sets(path)
    manifest["sets"] = sets
    write_json(store.manifest_path(layer_id), manifest, durable=False)
    return sets


def delta_between(a: Sets, b: Sets) -> dict[str, PackageDelta]:
    """Per manager, what changed from `a` to `b` (managers with no change left out)."""
    out: dict[str, PackageDelta] = {}
    for plugin in sorted(set(a) | set(b)):
        face = database_of(plugin)
        if face is not None:
            compare = face.compare_versions
        else:
            from ashcore.model import natural_compare

            compare = natural_compare
        delta = PackageDelta.between(a.get(plugin, {}), b.get(plugin, {}), compare)
        if delta:
            out[plugin] = delta
    return out


def complete_now(target: Target, layer_id: int) -> None:
    """`complete`, taking the store lock (for `ashctl` commands), and the sizes."""
    from ashcore.sizes import SIZE_WALK, complete_sizes

    with target.store.locked(target.config.lock_timeout):
        complete(target, layer_id)
    complete_sizes(target, limit=SIZE_WALK)


def complete(target: Target, layer_id: int) -> None:
    """Record the sets of `layer_id` and of the layers above it that lack them (up to WALK);
    a layer without a package delta of its own (drift, `run`, interrupted without its
    database face) gets the one its sets tell."""
    store = target.store
    todo: list[int] = []
    current: int | None = layer_id
    while current is not None and len(todo) < WALK:
        manifest = read_json(store.manifest_path(current))
        if not isinstance(manifest, dict):
            break
        todo.append(current)
        if isinstance(manifest.get("sets"), dict) and current != layer_id:
            break
        parent = manifest.get("parent")
        current = parent if isinstance(parent, int) else None
    for layer in reversed(todo):
        sets = sets_of(target, layer)
        record = store.get(layer)
        if sets is None or record.parent is None or record.packages:
            continue  # a manager's layer has its own delta already
        parent_sets = sets_of(target, record.parent)
        if parent_sets is None:
            continue
        merged = PackageDelta()
        for delta in delta_between(parent_sets, sets).values():
            merged = merged.merge(delta)
        if merged:
            store.set_packages(layer, merged)
            store.amend_manifest(layer, "packages", merged.to_json(), durable=False)
