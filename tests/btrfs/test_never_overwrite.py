"""No recovery path reuses a layer id or deletes a layer's snapshot; a lost or older
database is told and rebuilt from the manifests."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from tests.btrfs.conftest import Image
from tests.btrfs.test_lifecycle import layers

pytestmark = pytest.mark.btrfs


def run(img: Image, name: str) -> None:
    img.ashctl("run", "--name", name, "--", "touch", str(img.root / "etc" / name), check=True)


def uuids(img: Image) -> dict[int, str]:
    return {layer["id"]: layer["uuid"] for layer in layers(img)}


def test_a_lost_database_stops_the_next_operation_until_doctor_rebuilds_it(ready: Image) -> None:
    run(ready, "one")
    before = uuids(ready)
    for suffix in ("", "-wal", "-shm"):
        path = ready.root / f".ash/ash.db{suffix}"
        if path.exists():
            path.unlink()
    result = ready.ashctl("run", "--name", "two", "--", "touch", str(ready.root / "etc/two"))
    assert result.returncode == 1
    assert "doctor --repair" in result.stderr and "Traceback" not in result.stderr
    ready.ashctl("doctor", "--repair", check=True)
    assert uuids(ready) == before  # every layer back, snapshot untouched
    run(ready, "two")
    after = layers(ready)
    assert after[-1]["id"] == max(before) + 1 and after[-1]["parent"] == max(before)
    assert {k: v for k, v in uuids(ready).items() if k in before} == before


def test_a_database_put_back_from_an_older_copy_never_reuses_an_id(ready: Image) -> None:
    run(ready, "one")
    db = ready.root / ".ash/ash.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    old = ready.dir / "ash.db.old"
    shutil.copy(db, old)
    run(ready, "two")
    run(ready, "three")
    kept = uuids(ready)
    for suffix in ("-wal", "-shm"):
        path = ready.root / f".ash/ash.db{suffix}"
        if path.exists():
            path.unlink()
    shutil.copy(old, db)  # what a power cut, or a restore from a backup, may leave
    run(ready, "four")
    ids = sorted(int(n) for n in os.listdir(ready.root / ".ash/layers") if n.isdigit())
    assert ids[-1] > max(kept)  # "four" took a fresh id
    import btrfsutil

    for layer_id, uuid in kept.items():  # no snapshot replaced
        info = btrfsutil.subvolume_info(str(ready.root / f".ash/layers/{layer_id}"))
        assert info.uuid.hex() == uuid
    ready.ashctl("doctor", "--repair", check=True)
    assert set(kept) <= set(uuids(ready))
