"""The fast paths agree with the slow generic walk on the same data."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import btrfsutil
import pytest

from ashcore.btrfs import Btrfs
from ashcore.treecompare import changed_paths as tree_changes
from tests.btrfs.conftest import Image

pytestmark = pytest.mark.btrfs


def change_everything(root: str) -> None:
    def p(rel: str) -> str:
        return os.path.join(root, rel)

    with open(p("etc/new"), "w") as f:
        f.write("new")
    with open(p("etc/keep"), "a") as f:
        f.write(" more")
    os.chmod(p("etc/mode"), 0o600)
    os.chown(p("etc/owner"), 1000, 1000)
    os.unlink(p("etc/gone"))
    os.rename(p("etc/moved"), p("etc/moved-to"))
    os.symlink("keep", p("etc/link"))
    os.link(p("etc/keep"), p("etc/hard"))
    os.makedirs(p("opt/app/lib"))
    with open(p("opt/app/lib/x.so"), "wb") as f:
        f.write(b"\0" * 5000)
    os.rename(p("srv/tree"), p("srv/tree2"))
    os.unlink(p("srv/tree2/f1"))
    os.setxattr(p("etc/xattr"), "user.ash", b"1")


def prepare(root: str) -> None:
    os.makedirs(os.path.join(root, "srv/tree"))
    for name in ("keep", "mode", "owner", "gone", "moved", "xattr", "untouched"):
        with open(os.path.join(root, "etc", name), "w") as f:
            f.write(name)
    for i in range(3):
        with open(os.path.join(root, f"srv/tree/f{i}"), "w") as f:
            f.write(str(i))


def covered(path: str, reported: set[str]) -> bool:
    parts = path.split("/")
    return any("/".join(parts[:i]) in reported for i in range(len(parts), 0, -1))


def checkpointed(image: Image, commit: Callable[[str], object]) -> tuple[str, int, float]:
    """The prepared root committed with `commit`: a read-only snapshot of it ("before"), and
    the checkpoint (generation, time) that every later change is after."""
    root = str(image.root)
    prepare(root)
    commit(root)
    before = str(image.top / "before")
    btrfsutil.create_snapshot(root, before, read_only=True)
    generation, since = Btrfs().info(root).generation, time.time()
    time.sleep(0.05)
    return before, generation, since


def test_send_stream_and_tree_search_agree_with_a_full_walk(image: Image) -> None:
    root = str(image.root)
    fs = Btrfs()
    before, generation, since = checkpointed(image, btrfsutil.sync)
    with open(os.path.join(root, "etc/untouched")) as f:  # a read: atime only
        f.read()
    change_everything(root)
    btrfsutil.sync(root)
    after = str(image.top / "after")
    btrfsutil.create_snapshot(root, after, read_only=True)

    slow = tree_changes(before, after)
    send = fs.changed_paths(before, after)
    quick = fs.changed_since(root, generation, since)
    assert quick is not None

    expected = {
        "etc/new",
        "etc/keep",
        "etc/mode",
        "etc/owner",
        "etc/gone",
        "etc/moved",
        "etc/moved-to",
        "etc/link",
        "etc/hard",
        "opt",
        "opt/app",
        "opt/app/lib",
        "opt/app/lib/x.so",
        "srv/tree",
        "srv/tree2",
        "srv/tree/f0",
        "srv/tree/f1",
        "srv/tree/f2",
        "srv/tree2/f0",
        "srv/tree2/f2",
    }
    assert expected <= slow
    assert "etc/untouched" not in slow and "etc/untouched" not in quick
    # The send stream names every path the walk finds changed, or the folder it moved with.
    assert all(covered(p, send) for p in slow), sorted(p for p in slow if not covered(p, send))
    # And the walk, which stands in for send when send cannot name a path, names all it does.
    assert all(covered(p, slow) for p in send), sorted(p for p in send if not covered(p, slow))
    # The tree search names every changed path that still exists, and the folder of every
    # removed one: a check on it never misses a change.
    missed = [p for p in slow if not covered(p, quick) and not covered(os.path.dirname(p), quick)]
    assert missed == []
    assert "etc/xattr" in send and "etc/xattr" in quick and "etc/xattr" in slow
    for snap in (before, after):
        btrfsutil.delete_subvolume(snap)


def test_a_snapshot_shows_buffered_writes_to_the_tree_search(image: Image) -> None:
    """A read-only snapshot holds every write made so far, buffered or not, and its tree
    search names them: the drift check's probe. A transaction commit alone does not write
    buffered data back, and the tree search of the live root misses an append (why the
    begin takes the probe first)."""
    root = str(image.root)
    fs = Btrfs()
    before, generation, since = checkpointed(image, btrfsutil.sync)
    os.sync()
    change_everything(root)
    with open(os.path.join(root, "srv/big"), "wb") as f:  # delalloc: not on disk yet
        f.write(os.urandom(8 << 20))
    with open(os.path.join(root, "etc/untouched"), "a") as f:  # an append, just now
        f.write("edit")
    transid = btrfsutil.start_sync(root)
    btrfsutil.wait_sync(root, transid)
    live = fs.changed_since(root, generation, since)
    assert live is not None and "etc/untouched" not in live  # the old check's blind spot
    probe = str(image.top / "probe")
    btrfsutil.create_snapshot(root, probe, read_only=True)
    quick = fs.changed_since(probe, generation, since)
    assert quick is not None
    slow = tree_changes(before, probe)
    assert {"srv/big", "etc/untouched"} <= slow
    missed = [p for p in slow if not covered(p, quick) and not covered(os.path.dirname(p), quick)]
    assert missed == []
    for snap in (before, probe):
        btrfsutil.delete_subvolume(snap)


def test_an_append_just_before_the_begin_is_drift(ready: Image) -> None:
    """`echo x >> /etc/issue` and at once a package operation: the edit is a drift layer of
    its own, not part of the operation's layer (10/10 tries)."""
    from ashcore.lifecycle import Operation, begin, commit
    from ashcore.process import owner_of
    from ashcore.target import Target

    target = Target(str(ready.root))
    issue = ready.root / "etc/issue"
    issue.write_text("Debian\n")
    for i in range(10):
        os.sync()
        with open(issue, "a") as f:
            f.write(f"edit {i}\n")
        op = Operation("test", "test", ("test", "install", f"x{i}"), owner_of(os.getpid()))
        begin(target, op, None)
        (ready.root / f"usr-x{i}").write_text("installed")
        layer = commit(target, op, None)
        assert layer is not None
        drift = target.store.get(layer.parent) if layer.parent is not None else None
        assert drift is not None and drift.status.value == "drift", (i, drift)
        kept = target.store.layer_path(drift.id)
        assert (Path(kept) / "etc/issue").read_text().endswith(f"edit {i}\n")
        assert not (Path(kept) / f"usr-x{i}").exists()
    target.store.close()


def test_tree_search_sees_nothing_when_nothing_changed(image: Image) -> None:
    root = str(image.root)
    fs = Btrfs()
    prepare(root)
    btrfsutil.sync(root)
    generation, since = fs.info(root).generation, time.time()
    btrfsutil.sync(root)
    assert fs.changed_since(root, generation, since) == set()


def test_after_a_layer_only_noise_takes_the_fast_path(ready: Image) -> None:
    """The drift check after a package run needs no send stream when only noise changed:
    the probe's tree search since the layer's (transaction, time) checkpoint is exact."""
    from ashcore.lifecycle import Operation, begin, commit
    from ashcore.process import owner_of
    from ashcore.target import Target

    (ready.root / "var/log").mkdir(parents=True)  # as in any root
    target = Target(str(ready.root))
    op = Operation("test", "test", ("test", "install", "x"), owner_of(os.getpid()))
    begin(target, op, None)
    (ready.root / "usr").mkdir(exist_ok=True)
    (ready.root / "usr/x").write_text("installed")
    time.sleep(0.05)  # a package manager's files are not written in the tick of its post hook
    commit(target, op, None)
    (ready.root / "var/log/after").write_text("noise")
    with open(ready.root / "usr/x") as f:  # a read: atime only
        f.read()
    streams: list[str] = []
    real = target.fs.changed_paths

    def counting(old: str, new: str) -> set[str]:
        streams.append(new)
        return real(old, new)

    target.fs.changed_paths = counting  # type: ignore[method-assign]
    before = len(target.store.layers())
    begin(target, op.replace(owner="1:1"), None)
    assert streams == []  # the tree search alone
    (ready.root / "etc/hand-edit").write_text("x")
    layer = commit(target, op.replace(owner="1:1"), None)  # the layer of the second run
    assert layer is not None and len(target.store.layers()) == before + 1
    # The probe is swept once the run is done, not while the manager runs.
    assert [n for n in os.listdir(target.store.layers_dir) if n.startswith("probe")] == []
    assert (Path(target.store.layer_path(layer.id)) / "etc/hand-edit").exists()
    target.store.close()
