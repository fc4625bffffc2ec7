"""The one entry point of every plugin's hook face.

A hook is a translator: it names the operation and calls `begin_hook` or `commit_hook`.
These never raise: they print one line and return the exit code the hook should exit with.
With `on_error = "abort"` (the default) a begin that cannot make its layer returns 1, so the
manager stops before it changes anything; `commit_hook` returns 0 whatever happens, since
the package transaction is over and must not be reported as failed because of us.

This module is on the path of every package operation: it imports only what begin and
commit need, and writes its one line to stderr itself.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence

from ashcore.config import CONFIG_PATH, THROWAWAY_MARK, load_config
from ashcore.drift import discard_early
from ashcore.errors import AshError, StoreError
from ashcore.lifecycle import Operation, Outcome, begin, commit, extend_late_until, seal
from ashcore.process import owner_of
from ashcore.storedb import explain
from ashcore.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from subprocess import Popen

    from ashcore.model import PackageDatabase

    Handover = tuple[Popen[bytes], int]

DatabaseFactory = Callable[[], "PackageDatabase | None"]
Describe = Callable[["float | None"], object]
"""What the helper does once the manager is done: `commit_hook(..., helper_exit=...)` with
the time the manager exited, or None when it still runs (a daemon)."""

_owners: dict[int, str] = {}  # pid -> owner (pid and start time), as this process saw it


def leave(code: int) -> None:
    """End a hook's process with `code` at once: its output flushed, without the
    interpreter's teardown (~3 ms the manager would wait for). Nothing needs closing: the
    store's connection holds no open transaction, and the helper, if any, is another process."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed by the manager: no one hears
            stream.flush()
    os._exit(code)


def say(message: str) -> None:
    sys.stderr.write(f"ashlayers: {message}\n")
    sys.stderr.flush()


def _operation(
    plugin: str,
    manager: str,
    argv: Sequence[str],
    owner_pid: int,
    targets: Sequence[str] = (),
    name: str | None = None,
    reopen: bool = True,
) -> Operation:
    # Known from the begin when a helper commits after the manager has exited.
    owner = _owners.get(owner_pid) or owner_of(owner_pid)
    _owners[owner_pid] = owner
    return Operation(
        plugin,
        manager=manager,
        argv=tuple(argv),
        owner=owner,
        targets=tuple(targets),
        name=os.environ.get("ASH_NAME") or name or None,
        reopen=reopen,
    )


def _set_up(target: Target) -> bool:
    """Whether `ashctl setup` made this root ready. A root nobody set up (an image being
    bootstrapped with --installroot / --root) is left alone; a set-up root whose store is
    missing is an error, so that no layer is lost silently."""
    if target.store.exists():
        return True
    if os.path.exists(os.path.join(target.root, CONFIG_PATH)):
        raise StoreError(
            f"the store {target.store.path} is missing (is it mounted?)",
            hint="mount it (see /etc/fstab) or run `ashctl setup`",
        )
    return False


def begin_hook(
    *,
    root: str,
    plugin: str,
    manager: str,
    argv: Sequence[str],
    owner_pid: int,
    database: DatabaseFactory,
    targets: Sequence[str] = (),
    name: str | None = None,
    reopen: bool = True,
    commit: Describe | None = None,
) -> int:
    """Pre-transaction. Returns 0 to let the manager go on, 1 to stop it (on_error=abort).

    `name` is the plugin's name for the layer (ASH_NAME wins). `reopen=False` for a manager
    whose one process may run several transactions (a libdnf5 daemon): each is a layer.
    `commit`: how to describe the layer; with it, this process stays behind as the helper: it
    seals the layer when the post hook's `ash-commit` asks, and describes it once the manager
    is done (ashcore/linger.py): one interpreter per operation.
    """
    if os.environ.get("ASH_SKIP", "") not in ("", "0"):
        say("ASH_SKIP is set: no layer for this run")
        return 0
    if root == "/" and os.path.exists(THROWAWAY_MARK):
        say("this boot is a throwaway copy of a layer (from the boot menu): no layer, nothing kept")
        return 0
    on_error = "abort"
    try:
        # The policy first: even a core that cannot start (btrfsutil gone) must honour "warn".
        config = load_config(root)
        on_error = config.on_error
        target = Target(root, config=config)
        if not _set_up(target):
            return 0
        op = _operation(plugin, manager, argv, owner_pid, targets, name, reopen)
        started = begin(target, op, database()) == Outcome.STARTED
        discard_early(target)  # a begin that skipped or joined did not use it
        if started:
            _warn_low_space(target)
    except Exception as e:  # never let a crash of ours break the manager in a worse way
        return _report(e, on_error, before=True)
    if started and commit is not None:
        target.store.close()  # a child must not inherit the connection
        try:
            from ashcore.linger import linger

            sealer = _Sealer(root, op.owner)
            linger(
                target.store.path,
                owner_pid,
                sealer,
                commit,
                prepare=sealer.prepare,
                late=sealer.exited,
            )
        except OSError as e:  # the post hook then commits the slow way
            say(f"cannot wait for the post hook ({e.strerror}): it will start Python")
    return 0


def commit_hook(
    *,
    root: str,
    plugin: str,
    manager: str,
    argv: Sequence[str],
    owner_pid: int,
    database: DatabaseFactory,
    failed: bool | None = False,
    owner: str | None = None,
    helper: bool = False,
    helper_exit: float | None = None,
) -> int:
    """Post-transaction: make the layer. Always returns 0. failed=None: the seal's or the
    database face's verdict (see describe.describe). `owner`: the owner as the begin saw it,
    for a helper that describes after the manager has exited (`hand_over_hook`). `helper`:
    this is the helper's call, which describes a sealed layer only; `helper_exit`: when the
    manager exited (None: it still runs)."""
    if root == "/" and os.path.exists(THROWAWAY_MARK):
        return 0
    try:
        target = Target(root)
        if not _set_up(target):
            return 0
        if owner is not None:
            _owners[owner_pid] = owner
        op = _operation(plugin, manager, argv, owner_pid)
        layer = commit(
            target,
            op,
            database(),
            failed=failed,
            sealed_only=helper,
            late_until=helper_exit,
        )
        if layer is not None:
            state = ", failed" if layer.status.value == "failed" else ""
            say(f'layer {layer.id} "{layer.name}" ({layer.packages.summary()}{state})')
        if layer is not None and helper and not os.environ.get("ASH_NO_SIZES"):
            # Off the manager's time. A replay, which waits for each step's helper, asks
            # for none: the next operation's helper or `prune` measures them.
            from ashcore.sizes import SIZE_WALK, complete_sizes

            complete_sizes(target, limit=SIZE_WALK)
        elif layer is not None and not os.environ.get("ASH_NO_SIZES"):
            _measure_later(root)  # no helper stayed (`dpkg -i` alone): a child measures
        if layer is not None and helper:
            from ashcore.boot.menu import refresh_quietly

            refresh_quietly(target)  # the menu's recent layers; a kernel update's new kernel
    except Exception as e:
        _report(e, "warn", before=False)
    return 0


def _measure_later(root: str) -> None:
    """Measure the newest layers' sizes in a detached child, off the manager's time (it
    waits for this hook, not for the child, whose output goes nowhere). Not from a process
    that runs threads (dnf4's plugin runs inside dnf): a fork there is unsafe."""
    try:
        if len(os.listdir("/proc/self/task")) > 1:
            return
        pid = os.fork()
    except OSError:
        return
    if pid:
        return
    try:
        os.setsid()
        os.chdir("/")
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(quiet, fd)
        from ashcore.sizes import SIZE_WALK, complete_sizes

        complete_sizes(Target(root), limit=SIZE_WALK)  # a connection of its own
    finally:
        os._exit(0)


class _Sealer:
    """The helper's seal: its target opened once, before the post hook asks (`prepare`), so
    that the manager waits for the snapshot alone."""

    def __init__(self, root: str, owner: str) -> None:
        self.root, self.owner = root, owner
        self.target: Target | None = None
        self.said: int | None = None  # the layer the post hook named last

    def prepare(self) -> None:
        self.target = Target(self.root)
        self.target.store.db  # noqa: B018  (opens the connection)

    def __call__(self) -> str | None:
        """What the post hook prints (`<id> <name>`), or None when nothing was sealed."""
        if self.target is None:
            self.prepare()
        assert self.target is not None
        sealed = seal(self.target, _sealing(self.owner))
        if sealed is None:
            return None
        if sealed[0] == self.said:
            return ""  # one line per layer: a front end's next dpkg run reopened it
        self.said = sealed[0]
        return f"{sealed[0]} {sealed[1]}"

    def exited(self, when: float) -> None:
        """The manager exited at `when`, after its layer was described."""
        try:
            extend_late_until(Target(self.root), self.owner, when)
        except Exception as e:  # nothing of the layer is at stake
            say(f"cannot record when the manager exited: {e}")


def _sealing(owner: str) -> Operation:
    """The operation a seal names: only its owner matters."""
    return Operation("", manager=None, argv=(), owner=owner)


def seal_hook(*, root: str, owner_pid: int) -> bool:
    """Post-transaction, inside the manager's own process (dnf4): seal the layer now, before
    the manager goes on, and say which layer it is, as `ash-commit` does for the managers
    whose helper seals. False when there was nothing to seal, or it failed (said)."""
    try:
        target = Target(root)
        if not _set_up(target):
            return False
        owner = _owners.get(owner_pid) or owner_of(owner_pid)
        sealed = seal(target, _sealing(owner))
    except Exception as e:
        _report(e, "warn", before=False)
        return False
    if sealed is None:
        return False
    say(f'layer {sealed[0]} "{sealed[1]}"')
    return True


def hand_over_hook(*, root: str, owner_pid: int, command: list[str]) -> Handover | None:
    """Post-transaction of a manager whose process cannot fork the helper (dnf4): start
    `command` as the helper that makes the layer once the manager is done (linger.hand_over).
    Returns (the helper, the end of its stdin to close when the manager goes on), or None when
    no helper started: the caller then calls `commit_hook`, which commits itself, or finds
    nothing to commit (the begin was skipped or joined another run: no helper for that)."""
    try:
        target = Target(root)
        if not _set_up(target):
            return None
        from ashcore.linger import hand_over

        owner = _owners.get(owner_pid) or owner_of(owner_pid)
        with target.store.locked(target.config.lock_timeout):
            pending = target.store.pending()
            if pending is None or pending["owner"] != owner:
                return None  # no transaction of this run: another run's helper stays named
            return hand_over(target.store.path, owner_pid, command)
    except Exception as e:
        if os.environ.get("ASH_DEBUG"):
            import traceback

            traceback.print_exception(e)
        return None


def guarded(step: Callable[[], int], *, before: bool, root: str = "/") -> int:
    """Run a hook face's own work (reading the manager's command line, its stdin): an error
    of its own is one line, not a traceback, and before the transaction it follows on_error."""
    try:
        return step()
    except Exception as e:
        try:
            on_error = load_config(root).on_error
        except Exception:
            on_error = "abort"
        return _report(e, on_error, before=before)


def _warn_low_space(target: Target) -> None:
    """Say so when the root's filesystem runs low (below retention.warn_free), with what
    pruning could free. Only warns: nothing is deleted on a package operation's path."""
    from ashcore.config import WARN_FREE

    st = os.statvfs(target.root)
    free = st.f_bavail * st.f_frsize
    limit = target.config.retention.warn_free
    if limit is None:
        limit = min(WARN_FREE, st.f_blocks * st.f_frsize // 10)
    if not limit or free >= limit:
        return
    from ashcore.sizes import human

    held, prunable = target.store.space()
    say(
        f"only {human(free)} free on {target.root}; the layers hold {human(held)}, of which"
        f" up to {human(prunable)} can be pruned: see `ashctl list`, then e.g."
        " `ashctl prune --max-size SIZE` (or set retention.warn_free in ash.toml)"
    )


def _report(error: Exception, on_error: str, *, before: bool) -> int:
    if isinstance(error, sqlite3.Error):
        error = explain(error, "the store")
    if isinstance(error, AshError):
        message = str(error)
    else:
        message = f"internal error: {type(error).__name__}: {error}"
    if os.environ.get("ASH_DEBUG"):
        import traceback

        traceback.print_exception(error)
    if on_error == "abort" and before:
        say(
            f"cannot make a layer: {message}. Stopped before any change; "
            "run again with ASH_SKIP=1 to go on without a layer"
        )
        return 1
    say(f"no layer for this run: {message}")
    return 0
