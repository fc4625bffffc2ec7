"""The fast paths agree with the slow generic walk on the same data."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import btrfsutil
import pytest

from ashcore.btrfs import Btrfs
from ashcore.diff import tree_changes
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
    # The tree search names every changed path that still exists, and the folder of every
    # removed one: a check on it never misses a change.
    missed = [p for p in slow if not covered(p, quick) and not covered(os.path.dirname(p), quick)]
    assert missed == []
    assert "etc/xattr" in send and "etc/xattr" in quick  # xattrs: the walk does not look
    for snap in (before, after):
        btrfsutil.delete_subvolume(snap)


def test_a_commit_without_a_data_flush_is_enough_for_the_tree_search(image: Image) -> None:
    """Btrfs.sync commits the transaction without writing the file data back: every change
    still shows in the tree search, a large write still in the page cache included."""
    root = str(image.root)
    fs = Btrfs()
    before, generation, since = checkpointed(image, fs.sync)
    change_everything(root)
    with open(os.path.join(root, "srv/big"), "wb") as f:  # delalloc: not on disk yet
        f.write(os.urandom(8 << 20))
    fs.sync(root)
    quick = fs.changed_since(root, generation, since)
    assert quick is not None
    after = str(image.top / "after")
    btrfsutil.create_snapshot(root, after, read_only=True)
    slow = tree_changes(before, after)
    assert "srv/big" in slow
    missed = [p for p in slow if not covered(p, quick) and not covered(os.path.dirname(p), quick)]
    assert missed == []
    for snap in (before, after):
        btrfsutil.delete_subvolume(snap)


def test_a_commit_a_hook_started_early_is_the_one_sync_waits_for(
    image: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start_commit (the launchers' first step) starts the commit in a child process;
    Btrfs.sync takes it, reaps the child, and returns the clock read before it started. One
    too old (the begin waited for a lock) is started again."""
    from ashcore import early

    root = str(image.root)
    fs = Btrfs()
    prepare(root)
    fs.sync(root)
    generation, since = fs.info(root).generation, time.time()
    time.sleep(0.05)
    with open(os.path.join(root, "srv/big"), "wb") as f:
        f.write(os.urandom(4 << 20))
    before = early.ctime_now()
    early.start_commit(root)
    assert root in early._started
    pid = early._started[root][1]
    when = fs.sync(root)
    assert root not in early._started
    assert before <= when <= early.ctime_now()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped
    quick = fs.changed_since(root, generation, since)
    assert quick is not None and "srv/big" in quick

    monkeypatch.setattr(early, "FRESH", -1.0)
    early.start_commit(root)
    time.sleep(0.01)
    later = early.ctime_now()
    assert fs.sync(root) >= later  # started again, after the stale one
    assert early._started == {}


def test_tree_search_sees_nothing_when_nothing_changed(image: Image) -> None:
    root = str(image.root)
    fs = Btrfs()
    prepare(root)
    btrfsutil.sync(root)
    generation, since = fs.info(root).generation, time.time()
    btrfsutil.sync(root)
    assert fs.changed_since(root, generation, since) == set()


def test_after_a_layer_only_noise_takes_the_fast_path(ready: Image) -> None:
    """The drift check after a package run needs no probe snapshot when only noise changed:
    the (transaction, time) checkpoint of the layer's snapshot is exact."""
    from ashcore.lifecycle import Operation, Target, begin, commit
    from ashcore.process import owner_of

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
    snapshots: list[str] = []
    real = target.fs.snapshot

    def counting(source: str, dest: str, **kw: object) -> None:
        snapshots.append(dest)
        real(source, dest, **kw)  # type: ignore[arg-type]

    target.fs.snapshot = counting  # type: ignore[method-assign]
    begin(target, op.replace(owner="1:1"), None)
    assert snapshots == []  # no probe
    (ready.root / "etc/hand-edit").write_text("x")
    commit(target, op.replace(owner="1:1"), None)  # the layer of the second run
    assert len(snapshots) == 1
    target.store.close()
