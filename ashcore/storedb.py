"""The store's database and lock: the SQLite connection (WAL; on a full disk, its index in
the connection's memory), its schema made or brought up to date, transactions, a WAL kept
short, and the flock(2) every change takes. What the rows say is `ashcore/store.py`'s."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ashcore.errors import AshError, BackendError, StoreError

WAL_LIMIT = 1 << 20  # bytes: see bound_wal
# Waiting for the lock or for another operation: the first look again after 1 ms, then twice
# as long each time, up to 50 ms (a layer is often done a few milliseconds later).
PAUSE_FIRST = 0.001
PAUSE_MAX = 0.05
FULL = 4 << 20  # bytes: below this much free, a database error is taken for a full disk


def full(path: str, error: sqlite3.Error | None = None) -> bool:
    """Whether the filesystem of `path` is (nearly) full, or `error` says it is."""
    if error is not None and "full" in str(error):
        return True
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL


def no_space(path: str) -> BackendError:
    return BackendError(
        f"no space left on the filesystem of {path}",
        hint="`ashctl list` shows what each layer holds; `ashctl prune --max-size SIZE`"
        " deletes the oldest snapshots down to SIZE (records stay), then try again",
    )


def explain(error: sqlite3.Error, path: str) -> AshError:
    """A database error as the user can act on it: a full disk is not a broken database."""
    if full(path, error):
        return no_space(path)
    if isinstance(error, sqlite3.OperationalError):
        return StoreError(f"cannot use the layer database in {path}: {error}")
    return StoreError(
        f"the layer database in {path} is unreadable: {error}",
        hint="run `ashctl doctor --repair` to rebuild it from the manifests",
    )


def open_database(
    store: str, schema: str, version: int, migrations: dict[int, str]
) -> sqlite3.Connection:
    """The store's `ash.db`, its schema made (an empty database) or migrated to `version`
    (`migrations[v]` brings version v to v + 1)."""
    try:
        db = _connect(store)
        # WAL + NORMAL: a commit is not fsynced, a power loss may drop the last
        # transactions; each layer's manifest (checked by uuid) lets the next run or
        # `doctor --repair` restore them. Saves an fsync on every hook.
        db.execute("PRAGMA synchronous=NORMAL")
        # A hook's connection closing must not checkpoint the WAL (milliseconds of
        # writes and syncs on every hook): checkpoints come as the WAL grows.
        no_checkpoint = getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE", None)
        if no_checkpoint is not None:  # Python >= 3.12
            db.setconfig(no_checkpoint, True)  # type: ignore[attr-defined,unused-ignore]
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found == 0:
            db.executescript("BEGIN IMMEDIATE;" + schema + f"PRAGMA user_version={version};COMMIT;")
        elif found < version:
            db.executescript(
                "BEGIN IMMEDIATE;"
                + "".join(migrations[v] for v in range(found, version))
                + f"PRAGMA user_version={version};COMMIT;"
            )
    except sqlite3.Error as e:
        raise explain(e, store) from e
    return db


def _connect(store: str) -> sqlite3.Connection:
    """A connection in WAL mode. On a full filesystem SQLite cannot make the WAL's
    shared-memory index (`ash.db-shm`: it writes into each page it maps, and fails), and
    every command, `prune` among them, stopped there: then the connection keeps the index
    in its own memory instead (exclusive locking, as SQLite allows in WAL mode), which
    reads with no space at all; other processes wait for it (`ashctl` holds it briefly)."""
    path = os.path.join(store, "ash.db")
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        return db
    except sqlite3.OperationalError as e:
        db.close()
        if not full(store, e):
            raise
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("PRAGMA journal_mode=WAL")
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One SQLite transaction (BEGIN IMMEDIATE); inside another, a part of it."""
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def bound_wal(db: sqlite3.Connection, store: str, limit: int = WAL_LIMIT) -> None:
    """Fold the WAL into the database and empty it once it holds more than `limit` bytes.
    A hook's process is most often the store's only connection, and such a connection
    reads the whole WAL to rebuild its index when it opens (0.4 ms a MiB here); a
    checkpoint costs a few fsyncs, more as the database grows. Called when a layer is made
    (by the helper, where there is one: off the manager's time), so that no hook meets a
    long WAL, nor pays for SQLite's own checkpoint (at 4 MiB)."""
    try:
        size = os.path.getsize(os.path.join(store, "ash.db-wal"))
    except OSError:
        return
    if size > limit:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


@contextmanager
def locked(store: str, timeout: float) -> Iterator[None]:
    """The store's lock (`<store>/lock`), waited for up to `timeout` seconds."""
    fd = os.open(os.path.join(store, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout
    pause = PAUSE_FIRST
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the store {store} stayed locked for {timeout:.0f} s",
                        hint="another package operation is running; wait for it",
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, PAUSE_MAX)
        yield
    finally:
        os.close(fd)
