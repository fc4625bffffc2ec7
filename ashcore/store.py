"""The store: layer records in SQLite, snapshots and manifests under one directory.

Layout of the store directory (a subvolume outside the deployment, e.g. /.ash):
    ash.db              records (WAL)
    lock                flock(2) taken by every change
    layers/<id>         the read-only snapshot of a layer
    layers/<id>.json    its manifest: the record, from which `doctor --repair` rebuilds ash.db
    layers/<id>.changes the paths it changed over its parent (ashcore/changes.py)
    layers/<id>.partial a snapshot being made (removed by recovery)
    deployments/<n>     writable snapshots made by rollback
    layers/probe.<pid>  a snapshot a begin took to look for drift (swept once its run is done)
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import AbstractContextManager

from ashcore import storedb
from ashcore.errors import NotFoundError, StoreError, UsageError
from ashcore.heads import Heads
from ashcore.manifests import Manifests
from ashcore.model import Checkpoint, Layer, Origin, PackageDelta, Seal, Status
from ashcore.ondisk import dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA_VERSION = 5
# A label names the line up to one layer (ashcore/labels.py); a layer may have several.
LABELS = "CREATE TABLE labels (name TEXT PRIMARY KEY, layer INTEGER NOT NULL);"
SCHEMA = (
    """
CREATE TABLE layers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    parent INTEGER,
    manager TEXT,
    plugin TEXT,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    finished TEXT,
    packages TEXT,
    pinned INTEGER NOT NULL DEFAULT 0,
    uuid TEXT,
    owner TEXT,
    deployment TEXT,
    before TEXT,
    sealed TEXT,
    size INTEGER,
    replaced_by INTEGER
);
CREATE INDEX layers_status ON layers(status);
CREATE TABLE deployments (
    uuid TEXT PRIMARY KEY,
    head INTEGER,
    checked_generation INTEGER,
    checked_time REAL,
    late_until REAL
);
"""
    + LABELS
)

# Version 1 had neither the seal of a pending layer nor the end of its manager's late writes.
MIGRATIONS = {
    1: "ALTER TABLE layers ADD COLUMN sealed TEXT;"
    "ALTER TABLE deployments ADD COLUMN late_until REAL;",
    # Version 2 had no sizes (ashcore/sizes.py).
    2: "ALTER TABLE layers ADD COLUMN size INTEGER;",
    # Version 3 had no replay (ashcore/replay.py).
    3: "ALTER TABLE layers ADD COLUMN replaced_by INTEGER;",
    # Version 4 had no labels.
    4: LABELS,
}

COLUMNS = (
    "id, name, parent, manager, command, status, created, finished, packages, pinned, uuid, size,"
    " replaced_by"
)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime())


def layer_from_row(row: tuple[Any, ...]) -> Layer:
    return Layer(
        id=row[0],
        name=row[1],
        parent=row[2],
        manager=row[3],
        command=row[4],
        status=Status(row[5]),
        created=row[6],
        finished=row[7],
        packages=PackageDelta.from_json(loads(row[8]) if row[8] else None),
        pinned=bool(row[9]),
        uuid=row[10],
        size=row[11],
        replaced_by=row[12],
    )


class Store(Manifests, Heads):
    """The store at `path`: its layers' records (this module), their manifests
    (`ashcore/manifests.py`), its database and lock (`ashcore/storedb.py`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.layers_dir = os.path.join(path, "layers")
        self._db: sqlite3.Connection | None = None

    # -- paths -------------------------------------------------------------------------------
    def layer_path(self, layer_id: int) -> str:
        return os.path.join(self.layers_dir, str(layer_id))

    def partial_path(self, layer_id: int) -> str:
        return os.path.join(self.layers_dir, f"{layer_id}.partial")

    @property
    def deployments_dir(self) -> str:
        return os.path.join(self.path, "deployments")

    def exists(self) -> bool:
        return os.path.isdir(self.layers_dir)

    def create_layout(self) -> None:
        for d in (self.layers_dir, self.deployments_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.db  # noqa: B018  (creates the schema)

    # -- database and lock ------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.exists():
                raise StoreError(
                    f"no store at {self.path}", hint="run `ashctl setup` on this root first"
                )
            self._db = storedb.open_database(self.path, SCHEMA, SCHEMA_VERSION, MIGRATIONS)
        return self._db

    transaction = staticmethod(storedb.transaction)

    def bound_wal(self, limit: int = storedb.WAL_LIMIT) -> None:
        """Keep the WAL short (`storedb.bound_wal`): called when a layer is made."""
        storedb.bound_wal(self.db, self.path, limit)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def locked(self, timeout: float) -> AbstractContextManager[None]:
        """The store's lock, which every change takes (`storedb.locked`)."""
        return storedb.locked(self.path, timeout)

    # -- records -----------------------------------------------------------------------------
    def pending(self) -> dict[str, Any] | None:
        """The pending transaction's record: id, owner, origin (an `Origin`), manager,
        parent, deployment, before, name, command, sealed."""
        cur = self.db.execute(
            "SELECT id, owner, plugin, manager, parent, deployment, before, name,"
            " command, sealed FROM layers WHERE status = 'pending' ORDER BY id LIMIT 1"
        )
        cur.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cur.fetchone()
        if row is None:
            return None
        pending = dict(row)
        pending["origin"] = Origin.from_text(pending.pop("plugin"))
        return pending

    def insert_pending(
        self,
        *,
        name: str,
        parent: int | None,
        manager: str | None,
        origin: Origin,
        command: str,
        owner: str,
        deployment: str,
        before: dict[str, str] | None,
    ) -> int:
        cur = self.db.execute(
            "INSERT INTO layers (name, parent, manager, plugin, command, status, created, owner,"
            " deployment, before) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            (
                name,
                parent,
                manager,
                origin.to_text(),
                command,
                now_iso(),
                owner,
                deployment,
                dumps(before) if before is not None else None,
            ),
        )
        assert cur.lastrowid is not None
        layer_id = cur.lastrowid
        if self._on_disk(layer_id):
            # The database is older than the layers beside it (put back from a copy, or a
            # power cut lost its last transactions): never take an id a snapshot or manifest
            # has; go on after the highest one.
            fresh = max(self._highest_on_disk(), layer_id) + 1
            self.db.execute("UPDATE layers SET id = ? WHERE id = ?", (fresh, layer_id))
            self.db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'layers'", (fresh,))
            layer_id = fresh
        return layer_id

    def reserve_id(self) -> int:
        """A new layer id for a layer made outside a transaction (a pulled one; call under
        the lock): after every id given, on record or on disk, and never given again."""
        seq = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'layers'").fetchone()
        top = self.db.execute("SELECT max(id) FROM layers").fetchone()[0] or 0
        fresh = max(seq[0] if seq else 0, top, self._highest_on_disk()) + 1
        with self.transaction(self.db) as db:
            if seq is None:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('layers', ?)", (fresh,))
            else:
                db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'layers'", (fresh,))
        return fresh

    def _on_disk(self, layer_id: int) -> bool:
        return any(
            os.path.lexists(p)
            for p in (
                self.layer_path(layer_id),
                self.manifest_path(layer_id),
                self.partial_path(layer_id),
            )
        )

    def _highest_on_disk(self) -> int:
        """The highest layer id that has a snapshot, manifest or partial snapshot."""
        ids = [int(n.partition(".")[0]) for n in os.listdir(self.layers_dir) if n[:1].isdigit()]
        return max(ids, default=0)

    def has_layers_on_disk(self) -> bool:
        return self._highest_on_disk() > 0

    def reopen(
        self,
        layer_id: int,
        *,
        owner: str,
        before: dict[str, str] | None,
    ) -> None:
        self.db.execute(
            "UPDATE layers SET status = 'pending', owner = ?, before = ? WHERE id = ?",
            (owner, dumps(before) if before is not None else None, layer_id),
        )

    def mark_sealed(self, layer_id: int, seal: Seal | None) -> None:
        """Record that `layers/<id>.partial` holds the pending layer's final state (None: it
        does not, or no longer)."""
        self.db.execute(
            "UPDATE layers SET sealed = ? WHERE id = ?",
            (seal.to_text() if seal is not None else None, layer_id),
        )

    def finalize(
        self,
        layer: Layer,
        deployment: str | None,
        checked: Checkpoint | None,
        late_until: float | None = None,
    ) -> None:
        """Mark a layer done and make it the head of the deployment it was taken from.
        `late_until`: the manager's writes up to then (after its last post hook, before it
        exited) are its own, not drift (drift.drift_since_head)."""
        with self.transaction(self.db) as db:
            db.execute(
                "UPDATE layers SET name = ?, status = ?, finished = ?, packages = ?, uuid = ?,"
                " before = NULL, sealed = NULL WHERE id = ?",
                (
                    layer.name,
                    layer.status.value,
                    layer.finished,
                    dumps(layer.packages.to_json()),
                    layer.uuid,
                    layer.id,
                ),
            )
            if deployment is not None:
                self.set_head(deployment, layer.id, checked, late_until)

    def delete_row(self, layer_id: int) -> None:
        self.db.execute("DELETE FROM layers WHERE id = ?", (layer_id,))
        self.db.execute("DELETE FROM labels WHERE layer = ?", (layer_id,))

    def drop_pending(self, layer_id: int) -> None:
        """Delete the row of an operation that made no layer, and give its id back when it
        is the newest and nothing of it is on disk: ids count layers, not attempts. A layer's
        id, once it had a snapshot or a manifest, is never given again."""
        with self.transaction(self.db):
            self.delete_row(layer_id)
            if self._on_disk(layer_id):
                return
            top = self.db.execute("SELECT max(id) FROM layers").fetchone()[0] or 0
            self.db.execute(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = 'layers' AND seq = ?",
                (max(top, self._highest_on_disk()), layer_id),
            )

    def insert_layer(self, layer: Layer, *, origin: Origin | None = None) -> None:
        """Insert a complete record (used when rebuilding from manifests)."""
        self.db.execute(
            "INSERT OR REPLACE INTO layers (id, name, parent, manager, plugin, command, status,"
            " created, finished, packages, pinned, uuid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                layer.id,
                layer.name,
                layer.parent,
                layer.manager,
                origin.to_text() if origin is not None else None,
                layer.command,
                layer.status.value,
                layer.created,
                layer.finished,
                dumps(layer.packages.to_json()),
                int(layer.pinned),
                layer.uuid,
            ),
        )

    def created_of(self, layer_id: int) -> str | None:
        """When the layer's record was made (its operation began), pending ones too."""
        row = self.db.execute("SELECT created FROM layers WHERE id = ?", (layer_id,)).fetchone()
        return str(row[0]) if row else None

    def manager_of(self, layer_id: int) -> str | None:
        row = self.db.execute("SELECT manager FROM layers WHERE id = ?", (layer_id,)).fetchone()
        return row[0] if row else None

    def layer_owner(self, layer_id: int) -> tuple[str | None, Origin | None]:
        """The process that made the layer, and where the layer comes from."""
        row = self.db.execute(
            "SELECT owner, plugin FROM layers WHERE id = ?", (layer_id,)
        ).fetchone()
        return (row[0], Origin.from_text(row[1])) if row else (None, None)

    def get(self, layer_id: int) -> Layer:
        row = self.db.execute(
            f"SELECT {COLUMNS} FROM layers WHERE id = ? AND status != 'pending'", (layer_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no layer {layer_id}", hint="see `ashctl list`")
        return layer_from_row(row)

    def layers(self) -> list[Layer]:
        rows = self.db.execute(
            f"SELECT {COLUMNS} FROM layers WHERE status != 'pending' ORDER BY id"
        ).fetchall()
        return [layer_from_row(r) for r in rows]

    def layers_json(self) -> str:
        """`list --json` without building a Layer per row: the stored delta is already JSON."""
        import json

        fast = json.dumps
        empty = fast(PackageDelta().to_json())
        labels = self.labels()
        parts = []
        for r in self.db.execute(
            f"SELECT {COLUMNS} FROM layers WHERE status != 'pending' ORDER BY id"
        ):
            record = {
                "id": r[0],
                "name": r[1],
                "parent": r[2],
                "manager": r[3],
                "command": r[4],
                "status": r[5],
                "created": r[6],
                "finished": r[7],
                "pinned": bool(r[9]),
                "uuid": r[10],
                "size": r[11],
                "replaced_by": r[12],
                "labels": labels.get(r[0], []),
            }
            parts.append(fast(record)[:-1] + ', "packages": ' + (r[8] or empty) + "}")
        return "[" + ", ".join(parts) + "]"

    def find(self, ref: str) -> Layer:
        """A layer by id (ASCII digits), label or unique name. A blank reference is a usage
        error, never a default: `ashctl rollback "$UNSET"` must not roll back anywhere."""
        if not ref.strip():
            raise UsageError("an empty layer reference", hint="give a layer id or name")
        if ref.isascii() and ref.isdigit():
            if len(ref) > 18:  # beyond SQLite's integers; no layer has such an id
                raise NotFoundError(f"no layer {ref}", hint="see `ashctl list`")
            return self.get(int(ref))
        labelled = self.labelled(ref)
        rows = self.db.execute(
            f"SELECT {COLUMNS} FROM layers WHERE name = ? AND status != 'pending'", (ref,)
        ).fetchall()
        if labelled is not None:
            others = [str(r[0]) for r in rows if r[0] != labelled]
            if others:
                raise NotFoundError(
                    f"{ref!r} is the label of layer {labelled} and the name of layer"
                    f" {', '.join(others)}",
                    hint=f"use an id: {labelled} or {others[0]}",
                )
            return self.get(labelled)
        if not rows:
            raise NotFoundError(f"no layer named {ref!r}", hint="see `ashctl list`")
        if len(rows) > 1:
            ids = ", ".join(str(r[0]) for r in rows)
            raise NotFoundError(f"{len(rows)} layers are named {ref!r} ({ids})", hint="use an id")
        return layer_from_row(rows[0])

    # -- labels (ashcore/labels.py) ----------------------------------------------------------
    def labelled(self, label: str) -> int | None:
        """The layer `label` names, or None."""
        row = self.db.execute("SELECT layer FROM labels WHERE name = ?", (label,)).fetchone()
        return int(row[0]) if row else None

    def labels(self) -> dict[int, list[str]]:
        """layer -> its labels, sorted."""
        found: dict[int, list[str]] = {}
        for name, layer in self.db.execute("SELECT name, layer FROM labels ORDER BY name"):
            found.setdefault(layer, []).append(name)
        return found

    def set_label(self, label: str, layer_id: int | None) -> None:
        """Put `label` on `layer_id` (moved from where it was), or take it away (None)."""
        self.db.execute("DELETE FROM labels WHERE name = ?", (label,))
        if layer_id is not None:
            self.db.execute("INSERT INTO labels (name, layer) VALUES (?, ?)", (label, layer_id))

    def set_packages(self, layer_id: int, delta: PackageDelta) -> None:
        self.db.execute(
            "UPDATE layers SET packages = ? WHERE id = ?", (dumps(delta.to_json()), layer_id)
        )

    def set_name(self, layer_id: int, name: str) -> None:
        """Name the layer anew (a drift layer, once what it did is known), manifest too."""
        self.db.execute("UPDATE layers SET name = ? WHERE id = ?", (name, layer_id))
        self.amend_manifest(layer_id, "name", name, durable=False)

    def set_size(self, layer_id: int, size: int) -> None:
        self.db.execute("UPDATE layers SET size = ? WHERE id = ?", (size, layer_id))

    def unsized(self) -> list[int]:
        """Layers that keep their snapshot and have no size yet, newest first."""
        rows = self.db.execute(
            "SELECT id FROM layers WHERE size IS NULL AND status NOT IN ('pending', 'pruned')"
            " ORDER BY id DESC"
        )
        return [r[0] for r in rows]

    def space(self) -> tuple[int, int]:
        """(bytes the layers with snapshots added, of those the bytes of layers prune may
        take: not pinned, not a deployment's, not a base). One query: the hook asks."""
        row = self.db.execute(
            "SELECT coalesce(sum(size), 0), coalesce(sum(CASE WHEN pinned = 0 AND parent IS NOT"
            " NULL AND id NOT IN (SELECT head FROM deployments WHERE head IS NOT NULL)"
            " THEN size END), 0) FROM layers WHERE status NOT IN ('pending', 'pruned')"
        ).fetchone()
        return int(row[0]), int(row[1])

    def set_replaced_by(self, layer_id: int, new: int) -> None:
        self.db.execute("UPDATE layers SET replaced_by = ? WHERE id = ?", (new, layer_id))

    def clear_replaced_by(self, gone: list[int]) -> None:
        """Records no longer replaced: the layers that replaced them were undone."""
        self.db.executemany(
            "UPDATE layers SET replaced_by = NULL WHERE replaced_by = ?", [(i,) for i in gone]
        )

    def layers_of_deployment(self, deployment: str) -> list[int]:
        """The layers made on the deployment `deployment` (its uuid), pending ones too."""
        rows = self.db.execute("SELECT id FROM layers WHERE deployment = ?", (deployment,))
        return [r[0] for r in rows]

    def mark_pruned(self, layer_id: int) -> None:
        """The layer's snapshot is (to be) deleted: its record and manifest stay, as history."""
        self.db.execute("UPDATE layers SET status = 'pruned' WHERE id = ?", (layer_id,))
        self.amend_manifest(layer_id, "status", Status.PRUNED.value)

    def set_pinned(self, layer_id: int, pinned: bool) -> None:
        self.db.execute("UPDATE layers SET pinned = ? WHERE id = ?", (int(pinned), layer_id))

    def reparent(self, old: int, new: int | None) -> None:
        self.db.execute("UPDATE layers SET parent = ? WHERE parent = ?", (new, old))
