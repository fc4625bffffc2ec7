"""One interpreter per package operation: the pre hook's process stays to make the layer.

Starting Python and importing the core costs a hook ~20 ms; a post hook pays it a second
time only to snapshot. With `begin_hook(..., commit=...)` the pre hook forks after its begin:
the hook itself exits at once (the manager goes on), the child waits. The post hook is then
a shell script (`files/ash-commit`, installed as /usr/libexec/ashlayers/ash-commit) that
signals the child (SIGUSR1), waits for it to exit and prints what it said. When no child is
there (it was killed, the store moved, a skipped begin), the post hook falls back to the
Python commit, so nothing depends on the child but speed.

The child:
- closes stdin, stdout and stderr first (a manager that reads its hook's output, as pacman
  does, waits for them to close), then tells the parent it is ready;
- records "<child pid> <owner pid>" in <store>/run/commit, so that the post hook of that
  owner's run, and no other, signals it;
- on SIGUSR1 from a process under the owner, runs the commit with stderr going to
  <store>/run/commit.out and exits;
- exits without committing when the owner is gone (the next begin closes the transaction as
  interrupted) or after a day.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from ashcore.process import ancestors, is_alive, owner_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

RUN_FILE = "run/commit"
POLL = 0.5  # seconds between checks that the owner is alive
GIVE_UP = 86400.0


def run_file(store: str) -> str:
    return os.path.join(store, RUN_FILE)


def linger(store: str, owner_pid: int, commit: Callable[[], object]) -> None:
    """Fork a child that makes the layer when the post hook asks. Returns in the parent."""
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
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{pid} {owner_pid}\n")
            os.rename(tmp, path)
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
        os.write(ready_w, b"1")
        os.close(ready_w)
        if _wait(owner_pid):
            out = os.open(path + ".out.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 2)
            try:
                commit()
            finally:
                os.rename(path + ".out.tmp", path + ".out")
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _wait(owner_pid: int) -> bool:
    """True when the owner's post hook asked; False when the owner is gone or time is up."""
    owner = owner_of(owner_pid)
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        info = signal.sigtimedwait({signal.SIGUSR1}, POLL)
        if info is not None and owner_pid in [info.si_pid, *ancestors(info.si_pid)]:
            return True
        if not is_alive(owner):
            return False
    return False
