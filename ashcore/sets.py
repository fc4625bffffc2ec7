"""The installed set of every manager present in a layer, recorded in its manifest.

Every layer (a package operation's, drift, `ashctl run`, base, interrupted) records, under
`sets` in its manifest, `{plugin: {name: version}}` for each manager whose database is in its
snapshot, read through that plugin's database face. So a diff between any two layers is
right per manager, and a drift or `run` layer shows the packages it changed (a run with
ASH_SKIP=1, `dpkg -i` under `ashctl run`).

Reading every database costs tens of milliseconds (rpm's binding alone): it is done off the
managers' time, by the helper once its layer is described, by `ashctl` commands, or when a
diff first needs it; never by a hook's begin.

A database is read with the root's own bindings or not at all: from a process whose own root
is another (`ashctl --root R` on a host, whose rpm cannot open sid's rpmdb), the reader runs
chrooted into the layer's snapshot with its own python3. A read that fails records the
manager's set as unknown (None), never as empty: a delta against an unknown set is unknown,
not the removal of every package.
"""

from __future__ import annotations

import json
import os
import subprocess

from ashcore.errors import BackendError
from ashcore.log import logger
from ashcore.model import PackageDelta, Status
from ashcore.ondisk import read_json, write_json
from ashcore.registry import database_of, manager_named, managers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.model import PackageDatabase
    from ashcore.target import Target

log = logger(__name__)

Sets = dict[str, "dict[str, str] | None"]
"""plugin -> its installed set, or None when its database is there but could not be read."""
WALK = 8  # layers up the tree that one call completes at most
READ_IN_ROOT = "sets_read_in_root"
"""A manifest's mark: its sets were read with the root's own bindings, or recorded unknown.
Records of older versions lack it: they may hold a failed read (a host's bindings that could
not open the root's database) saved as an empty set (`suspect`, `read_again`)."""
READ_TIMEOUT = 120  # s: a chrooted reader that hangs must not hang `ashctl`

# What runs chrooted in a snapshot: the root's own ashlayers, found as its hooks find it.
CHROOTED_READER = """
import json, sys
v = "%d.%d" % sys.version_info[:2]
sys.path += ["/usr/local/lib/python%s/dist-packages" % v, "/usr/lib/python3/dist-packages",
             "/usr/lib/python%s/dist-packages" % v]
try:
    from ashcore.sets import read_here
except ImportError:
    import site
    site.main()
    from ashcore.sets import read_here
json.dump(read_here("/"), sys.stdout)
"""


def in_own_root(root: str) -> bool:
    """Whether `root` is this process's own root: its bindings are then the root's."""
    try:
        a, b = os.stat("/"), os.stat(root)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def present(path: str) -> list[str]:
    """The plugins whose database is (or may be) under `path`. A face that cannot load,
    or says nothing of its files, counts as present: its set is then unknown, not empty."""
    found = []
    for plugin in (m.name for m in managers() if not m.shares_database):
        face = database_of(plugin)
        state = getattr(face, "state_paths", None) if face is not None else None
        try:
            if state is not None and not any(
                os.path.lexists(os.path.join(path, rel)) for rel in state(path)
            ):
                continue
        except Exception as e:  # a config that does not parse: cannot tell
            log.debug("cannot tell whether %s has a %s database: %s", path, plugin, e)
        found.append(plugin)
    return found


def read_here(path: str) -> Sets:
    """The installed set of each manager whose database is under `path`, read with this
    process's bindings (right only when `path` is in this process's own root)."""
    sets: Sets = {}
    for plugin in present(path):
        face = database_of(plugin)
        try:
            if face is None:
                raise ImportError(f"the {plugin} database face cannot load")
            sets[plugin] = face.read_installed(path)
        except Exception as e:  # one manager's broken database does not hide the others
            log.warning("cannot read the %s database in %s: %s", plugin, path, e)
            sets[plugin] = None
    return sets


def read_chrooted(path: str) -> Sets:
    """The sets under `path` (a snapshot of another root), read chrooted into it by its own
    python3 and ashlayers. What cannot be read that way is unknown."""
    if not present(path):
        return {}  # no manager's database there: nothing to start a reader for
    argv = ["chroot", path, "/usr/bin/python3", "-I", "-S", "-c", CHROOTED_READER]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    why = ""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=READ_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    else:
        if done.returncode == 0:
            try:
                found = json.loads(done.stdout)
            except ValueError as e:
                why = f"its reader printed no sets: {e}"
            else:
                if isinstance(found, dict):
                    return {str(k): v if isinstance(v, dict) else None for k, v in found.items()}
                why = "its reader printed no sets"
        else:
            lines = done.stderr.strip().splitlines()
            why = f"exit code {done.returncode}" + (f": {lines[-1]}" if lines else "")
    log.warning("cannot read the package databases in %s with its own bindings (%s)", path, why)
    return dict.fromkeys(present(path))


class ChrootedDatabase:
    """A plugin's database face for a root that is not this process's own (`ashctl --root`
    closing a run that died): its sets are read chrooted (`read_chrooted`), with the root's
    bindings; versions are compared by this process's face."""

    def __init__(self, plugin: str, face: PackageDatabase) -> None:
        self.plugin, self.face = plugin, face

    def state_paths(self, root: str) -> tuple[str, ...]:
        state = getattr(self.face, "state_paths", None)
        return tuple(state(root)) if state is not None else ()

    def read_installed(self, root: str) -> dict[str, str]:
        found = read_chrooted(root)
        if self.plugin in found and found[self.plugin] is None:
            raise BackendError(
                f"cannot read the {self.plugin} database in {root} with its own bindings",
                hint="see the warning above; the layer's package changes stay unknown",
            )
        return found.get(self.plugin) or {}

    def compare_versions(self, a: str, b: str) -> int:
        try:
            return self.face.compare_versions(a, b)
        except ImportError:  # this process lacks the binding: an order good enough
            from ashcore.model import natural_compare

            return natural_compare(a, b)

    def failed(self, before: dict[str, str], after: dict[str, str]) -> bool:
        judge = getattr(self.face, "failed", None)
        return bool(judge(before, after)) if judge is not None else False


def read_sets(path: str, root: str = "/") -> Sets:
    """The installed set of each manager whose database is under `path`, a snapshot of (or
    in) the target root `root`: read here when `root` is this process's own, else chrooted."""
    return read_here(path) if in_own_root(root) else read_chrooted(path)


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
    sets = read_sets(path, target.root)
    manifest["sets"] = sets
    manifest[READ_IN_ROOT] = True
    write_json(store.manifest_path(layer_id), manifest, durable=False)
    return sets


def suspect(target: Target, layer_id: int) -> list[str]:
    """The managers whose recorded set in `layer_id` may be false: in a record of an older
    version (without READ_IN_ROOT), an empty set while the manager's database is in the
    layer's snapshot. (An empty set can be true: `read_again` tells.)"""
    manifest = read_json(target.store.manifest_path(layer_id))
    if not isinstance(manifest, dict) or manifest.get(READ_IN_ROOT):
        return []
    recorded, path = manifest.get("sets"), target.store.layer_path(layer_id)
    if not isinstance(recorded, dict) or not os.path.isdir(path):
        return []
    empty = [p for p, found in recorded.items() if found == {}]
    return sorted(set(empty) & set(present(path))) if empty else []


def read_again(target: Target, layer_id: int) -> dict[str, int | None]:
    """Read the suspect sets of `layer_id` again with the root's own bindings and record
    them (the layer's snapshot has not changed since); mark the manifest. Returns, for each
    set that was false, its size now (None: it cannot be read, so it is unknown). A layer
    whose package delta came from its sets (drift, `run`) and its children of that kind get
    theirs again. Call under the store lock."""
    store = target.store
    plugins = suspect(target, layer_id)
    manifest = read_json(store.manifest_path(layer_id))
    if not isinstance(manifest, dict):
        return {}
    corrected: dict[str, int | None] = {}
    if plugins:
        fresh = read_sets(store.layer_path(layer_id), target.root)
        for plugin in plugins:
            now = fresh.get(plugin)
            if now != manifest["sets"][plugin]:
                manifest["sets"][plugin] = now
                corrected[plugin] = len(now) if now is not None else None
    manifest[READ_IN_ROOT] = True
    write_json(store.manifest_path(layer_id), manifest, durable=False)
    if corrected:
        children = [x.id for x in store.layers() if x.parent == layer_id]
        for layer in (layer_id, *children):
            _delta_from_sets(target, layer)
    return corrected


def _delta_from_sets(target: Target, layer_id: int) -> None:
    """A layer that no manager's hooks described (drift, `run`, replayed files): its package
    delta again, from its sets and its parent's."""
    store = target.store
    record = store.get(layer_id)
    if manager_named(store.layer_owner(layer_id)[1]) is not None or record.parent is None:
        return  # a manager's layer: its delta is its database face's, read as it was made
    mine, parents = sets_of(target, layer_id), sets_of(target, record.parent)
    if mine is None or parents is None:
        return
    merged = PackageDelta()
    for delta in delta_between(parents, mine).values():
        merged = merged.merge(delta)
    store.set_packages(layer_id, merged)
    store.amend_manifest(layer_id, "packages", merged.to_json(), durable=False)


def unknown_between(a: Sets, b: Sets) -> list[str]:
    """The managers whose change from `a` to `b` is unknown: a set that could not be read."""
    return sorted(
        p for p in set(a) | set(b) if (p in a and a[p] is None) or (p in b and b[p] is None)
    )


def delta_between(a: Sets, b: Sets) -> dict[str, PackageDelta]:
    """Per manager, what changed from `a` to `b` (managers with no change left out, and
    those whose change is unknown: see `unknown_between`)."""
    out: dict[str, PackageDelta] = {}
    unknown = unknown_between(a, b)
    for plugin in sorted(set(a) | set(b)):
        if plugin in unknown:
            continue
        face = database_of(plugin)
        if face is not None:
            compare = face.compare_versions
        else:
            from ashcore.model import natural_compare

            compare = natural_compare
        delta = PackageDelta.between(a.get(plugin) or {}, b.get(plugin) or {}, compare)
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
    database face) gets the one its sets tell; a drift layer is named for what it did."""
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
    from ashcore.driftname import name_drift

    for layer in reversed(todo):
        sets = sets_of(target, layer)
        record = store.get(layer)
        if record.status == Status.DRIFT and isinstance(
            manifest := read_json(store.manifest_path(layer)), dict
        ):
            name_drift(target, layer, manifest)
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
