"""One interpreter per package operation, and the layer made once the manager is done.

Starting Python and importing the core costs a hook ~20 ms; a post hook would pay it a
second time, and the manager would wait for the snapshot too. With
`begin_hook(..., commit=...)` the pre hook forks after its begin: the hook itself exits at once
(the manager goes on) and the child, the *helper* of the transaction, waits. The post hook is
a shell script (`files/ash-commit`, installed as /usr/libexec/ashlayers/ash-commit) that tells
the helper the transaction is over (SIGUSR1) and returns at once. The helper then waits for the
manager to exit (its last writes, to its database and logs, belong to the layer), at most
SETTLE seconds (a daemon does not exit), and makes the layer. When no helper is there (killed,
a skipped begin), the post hook starts Python and commits as before.

While the helper lives the transaction is running: another begin waits for it, and the
commands that read layers (`ashctl list`...) wait for it to finish (`helper_alive`).

A hook that runs inside the manager's own process cannot fork (dnf4's plugin: dnf runs threads
and holds the rpmdb open): `hand_over` starts a fresh interpreter as the helper instead, named
in the same run file.

The helper:
- closes stdin, stdout and stderr first (a manager that reads its hook's output, as pacman
  does, waits for them to close), then tells the parent it is ready;
- is named in <store>/run/commit as "<pid>:<start> <owner pid>": ash-commit signals it only
  from a post hook under that owner;
- makes the layer with stderr going to <store>/run/commit.out, for `ashctl` and the curious;
- exits without a layer when the owner is gone before its post hook (the next begin closes the
  transaction as interrupted), or after a day.
"""

from __future__ import annotations

# `_signal` is the C module under `signal`: the same functions, without the enum wrappers that
# make `signal` cost every hook 1.5 ms to import (it imports `enum`).
import _signal as signal
import contextlib
import os
import time

from ashcore.process import is_alive, owner_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from subprocess import Popen

RUN_FILE = "run/commit"
POLL = 0.5  # seconds between checks that the owner is alive
SETTLE = 2.0  # seconds to wait for the manager to exit after its post hook
GIVE_UP = 86400.0


def run_file(store: str) -> str:
    return os.path.join(store, RUN_FILE)


def helper_alive(store: str, owner_pid: int) -> bool:
    """Whether a helper of `owner_pid`'s transaction is still at work."""
    try:
        with open(run_file(store)) as f:
            helper, owner = f.read().split()
    except (OSError, ValueError):
        return False
    return owner == str(owner_pid) and is_alive(helper)


def linger(store: str, owner_pid: int, commit: Callable[[], object]) -> None:
    """Fork the helper that makes the layer once the run is over. Returns in the parent."""
    path = run_file(store)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    for stale in (path, path + ".out"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    ready_r, ready_w = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # before fork: none is lost
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        os.close(ready_w)
        ok = os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        if ok:
            _register(path, pid, owner_pid)
        return
    code = 0
    try:
        os.close(ready_r)
        os.setsid()
        os.chdir("/")  # hold no folder of the caller's busy
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, ready_w)
        os.closerange(ready_w + 1, 1024)
        from ashcore import early

        early._started.clear()  # their pipes were closed just above
        os.write(ready_w, b"1")
        os.close(ready_w)
        if _wait_for_post_hook(owner_pid):
            _wait_for_exit(owner_pid, SETTLE)
            out = os.open(path + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 2)
            commit()
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _register(path: str, helper_pid: int, owner_pid: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{owner_of(helper_pid)} {owner_pid}\n")
    os.rename(tmp, path)


def hand_over(store: str, owner_pid: int, command: list[str]) -> tuple[Popen[bytes], int]:
    """For a manager whose process cannot fork the helper (dnf4: its plugin runs inside
    dnf, which runs threads and holds the rpmdb open): start `command`, a fresh interpreter,
    as the transaction's helper, named in the run file as a forked one is. Its stdin is a
    pipe whose other end is returned: the helper makes the layer once that end is closed
    (the manager exited, or closed it to run another transaction: `wait_for_release`), at
    most SETTLE seconds later. Raises OSError when it cannot start."""
    import subprocess

    path = run_file(store)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    read_end, write_end = os.pipe()
    try:
        with open(path + ".out", "wb") as out:
            os.chmod(out.fileno(), 0o600)
            child = subprocess.Popen(
                command,
                stdin=read_end,
                stdout=out,
                stderr=out,
                cwd="/",  # hold no folder of the manager's busy
                start_new_session=True,
            )
    except OSError:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    try:
        _register(path, child.pid, owner_pid)
    except OSError:
        child.kill()
        child.wait()
        os.close(write_end)
        raise
    return child, write_end


def wait_for_release(timeout: float = SETTLE) -> None:
    """In a helper started by `hand_over`: wait until the manager closes its end of stdin."""
    import select

    poller = select.poll()
    poller.register(0, select.POLLIN | select.POLLHUP)
    poller.poll(timeout * 1000)


def _wait_for_post_hook(owner_pid: int) -> bool:
    """True when the owner's post hook said the run is over; False when the owner is gone
    first (killed between its hooks) or time is up."""
    owner = owner_of(owner_pid)
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        # ash-commit signals only when this run's owner is its ancestor; it has exited by now,
        # so the sender cannot be looked up here.
        if signal.sigtimedwait({signal.SIGUSR1}, POLL) is not None:
            return True
        if not is_alive(owner):
            return False
    return False


def _wait_for_exit(pid: int, timeout: float) -> None:
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone already, or no pidfd: look every few milliseconds
        owner, deadline = owner_of(pid), time.monotonic() + timeout
        while is_alive(owner) and time.monotonic() < deadline:
            time.sleep(0.005)
        return
    import select

    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
    finally:
        os.close(fd)
