"""What a killed pull leaves, and how the next pull or `ashctl doctor` finishes or undoes it.

A pull receives streams as `layers/arriving.<pid>.<n>` and makes them layers one journaled
step at a time (`fleet/pull.<pid>-<start>.json`: the id it takes and the subvolume it
renames). A step whose record is written is done; one whose manifest and snapshot are both in
place only lacks its record; anything less is undone. Work folders of cut pushes and pulls
(`fleet/push.<pid>.*`, `fleet/pull.<pid>.*`) are deleted once their process is gone.
"""

from __future__ import annotations

import glob
import os
import shutil

from ashcore.model import Layer
from ashcore.ondisk import read_json
from ashcore.process import is_alive, owner_of
from ashcore.target import Target

ARRIVING = "arriving."


def fleet_dir(target: Target) -> str:
    path = os.path.join(target.store.path, "fleet")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def journal_path(target: Target) -> str:
    return os.path.join(fleet_dir(target), f"pull.{owner_of(os.getpid()).replace(':', '-')}.json")


def recover(target: Target, repair: bool = True) -> list[str]:
    """Finish or undo what a killed pull left: its journal step, its arriving subvolumes and
    its work folder. Returns what it found (for `doctor`)."""
    store = target.store
    if not store.exists():
        return []
    found: list[str] = []
    folder = os.path.join(store.path, "fleet")
    for journal in sorted(glob.glob(os.path.join(folder, "pull.*.json"))):
        owner = os.path.basename(journal)[len("pull.") : -len(".json")].replace("-", ":", 1)
        if is_alive(owner):
            continue
        found.append(f"a pull was cut short ({os.path.basename(journal)})")
        if repair:
            _finish(target, journal)
    for path in sorted(glob.glob(os.path.join(store.layers_dir, ARRIVING + "*"))):
        pid = os.path.basename(path)[len(ARRIVING) :].partition(".")[0]
        if pid.isdigit() and os.path.isdir(f"/proc/{pid}") and int(pid) != os.getpid():
            continue
        found.append(f"a stream a pull did not finish receiving: {os.path.basename(path)}")
        if repair:
            target.fs.delete(path)
    for path in sorted(
        glob.glob(os.path.join(folder, "pull.*.*")) + glob.glob(os.path.join(folder, "push.*.*"))
    ):
        if path.endswith(".json"):
            continue
        pid = os.path.basename(path).split(".")[1]
        if pid.isdigit() and not os.path.isdir(f"/proc/{pid}"):
            found.append(f"the work folder of a cut push or pull: {os.path.basename(path)}")
            if repair:
                shutil.rmtree(path, ignore_errors=True)
    return found


def _finish(target: Target, journal: str) -> None:
    store = target.store
    step = read_json(journal)
    if isinstance(step, dict) and isinstance(step.get("id"), int):
        layer_id = step["id"]
        present = store.db.execute("SELECT 1 FROM layers WHERE id = ?", (layer_id,)).fetchone()
        manifest = read_json(store.manifest_path(layer_id))
        if present is None:
            snapshot = os.path.isdir(store.layer_path(layer_id))
            complete = isinstance(manifest, dict) and (snapshot or step.get("arriving") is None)
            if complete:  # the record was all that was missing
                assert isinstance(manifest, dict)
                uuid = target.fs.info(store.layer_path(layer_id)).uuid if snapshot else ""
                layer = Layer.from_manifest(manifest, layer_id, uuid).replace(uuid=uuid or None)
                with store.transaction(store.db):
                    store.insert_layer(layer, plugin=manifest.get("plugin"))
            else:
                if snapshot:
                    target.fs.delete(store.layer_path(layer_id))
                if os.path.lexists(store.manifest_path(layer_id)):
                    os.unlink(store.manifest_path(layer_id))
        name = step.get("arriving")
        if isinstance(name, str) and name.startswith(ARRIVING) and "/" not in name:
            leftover = os.path.join(store.layers_dir, name)
            if os.path.lexists(leftover):
                target.fs.delete(leftover)
    os.unlink(journal)
