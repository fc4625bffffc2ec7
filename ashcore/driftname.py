"""A drift layer named for what it did: `drift: hold zeta-core` rather than the paths of a
manager's database it changed (`drift: var/lib/dpkg/status, ...`).

Each manager says what a change to its own state did (`Manager.describe_change`), read from
the snapshots before and after; the paths no manager explains stay in the name. Done when
the layer's sets are recorded (ashcore/sets.py `complete`: the helper, once its manager is
done, or `ashctl`), never on the hook's path: a status file is read twice.
"""

from __future__ import annotations

import os

from ashcore.drift import DRIFTED
from ashcore.log import logger
from ashcore.naming import NAMED, drift_name
from ashcore.registry import managers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ashcore.target import Target

log = logger(__name__)

NAMED_KEY = "drift_named"  # the manifest's mark: the managers were asked


def said_of(paths: list[str], before: str, after: str) -> tuple[list[str], list[str]]:
    """(what the managers said of the changes to their state among `paths`, the paths none
    explained), `before` and `after` the roots the change is between."""
    said: list[str] = []
    left = list(paths)
    for manager in managers():
        mine = [p for p in left if any(p == s or p.startswith(s + "/") for s in manager.state)]
        if not mine:
            continue
        try:
            text = manager.describe_change(mine, before, after)
        except Exception as e:  # a file it cannot parse: the paths name the layer
            log.debug("%s cannot say what changed in %s: %s", manager.name, mine, e)
            text = None
        if text:
            said.append(text)
            left = [p for p in left if p not in mine]
    return said, left


def name_drift(target: Target, layer_id: int, manifest: dict[str, Any]) -> None:
    """Name the drift layer `layer_id` (its manifest given) for what it did, once (call under
    the store lock)."""
    paths = manifest.get(DRIFTED)
    parent = manifest.get("parent")
    if manifest.get(NAMED_KEY) or not isinstance(paths, list) or not isinstance(parent, int):
        return
    store = target.store
    before, after = store.layer_path(parent), store.layer_path(layer_id)
    if not (os.path.isdir(before) and os.path.isdir(after)):
        return
    shown = [str(p) for p in paths[:NAMED]]
    said, left = said_of(shown, before, after)
    if said:
        store.set_name(layer_id, drift_name(left, said, more=len(paths) > NAMED))
    store.amend_manifest(layer_id, NAMED_KEY, True, durable=False)
