"""One interpreter per package operation: the helper that seals and describes its layer.

Starting Python and importing the core costs a hook ~20 ms; a post hook would pay it a
second time. With `begin_hook(..., commit=...)` the pre hook forks after its begin: the hook
itself exits at once (the manager goes on) and the child, the *helper* of the transaction,
stays. The post hook is a shell script (`files/ash-commit`, installed as
/usr/libexec/ashlayers/ash-commit) that asks the helper to seal and waits for its answer:

- **seal**, on each request, before the post hook returns: the helper snapshots the
  deployment read-only as the pending layer (lifecycle.seal, 1-2 ms). So the layer is the
  root as the manager's last post hook left it, and nothing done after the manager regains
  control is in it. A front end that runs dpkg again (a second begin of the same owner: the
  seal is void) is sealed again at its next post hook: the layer holds every run, and none
  is ever cut in the middle.
- **describe**, once the manager exited (or stayed quiet SETTLE seconds after a seal: a
  daemon does not exit): the package delta from the sealed snapshot and its parent, the
  record. Off the manager's time. If the helper dies (a systemd unit's cgroup killed with its
  manager), the seal is on disk and the next begin or `ashctl doctor` describes it the same.

When no helper is there (killed, a skipped begin), the post hook starts Python, which seals
and describes at once.

The request and answer go through two FIFOs beside the run file, `<run>.req` and
`<run>.ack`: ash-commit writes its pid, the helper answers "<pid> ok <id> <name>" (sealed:
ash-commit prints which layer) or "<pid> no" (nothing to seal). Every end is opened
read-write, so that no open ever blocks; ash-commit looks every second whether the helper
still lives.

While the helper lives the transaction is running: another begin waits for it, and the
commands that read layers (`ashctl list`...) wait for it to finish (`helper_alive`).

A hook that runs inside the manager's own process cannot fork (dnf4's plugin: dnf runs threads
and holds the rpmdb open): it seals in place, and `hand_over` starts a fresh interpreter to
describe, named in the same run file.

The helper:
- closes stdin, stdout and stderr first (a manager that reads its hook's output, as pacman
  does, waits for them to close), then tells the parent it is ready;
- is named in <store>/run/commit as "<pid>:<start> <owner pid>": ash-commit asks it only
  from a post hook under that owner;
- describes with stderr going to <store>/run/commit.out, for `ashctl` and the curious;
- exits without describing when the owner is gone with nothing sealed (the next begin closes
  the transaction as interrupted), or after a day.
"""

from __future__ import annotations

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
SETTLE = 2.0  # seconds: a manager still running this long after a seal is done with it
GIVE_UP = 86400.0
LATE_WAIT = 600.0  # seconds a helper waits for a quiet manager's exit once it described


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


def linger(
    store: str,
    owner_pid: int,
    seal: Callable[[], str | None],
    describe: Callable[[float | None], object],
    *,
    prepare: Callable[[], object] | None = None,
    late: Callable[[float], object] | None = None,
) -> None:
    """Fork the helper that seals and describes the run's layer. Returns in the parent.
    `prepare` runs in the helper once the parent has gone on, before any request; `late`,
    with the time the manager exited, when that came after its layer was described."""
    path = run_file(store)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    for stale in (path, path + ".out", path + ".req", path + ".ack"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    os.mkfifo(path + ".req", 0o600)
    os.mkfifo(path + ".ack", 0o600)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
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
        flags = os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC
        requests, answers = os.open(path + ".req", flags), os.open(path + ".ack", flags)
        os.write(ready_w, b"1")
        os.close(ready_w)
        if prepare is not None:
            prepare()
        _serve(owner_pid, requests, answers, seal, describe, path + ".out", late)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _serve(
    owner_pid: int,
    requests: int,
    answers: int,
    seal: Callable[[], str | None],
    describe: Callable[[float | None], object],
    out_path: str,
    late: Callable[[float], object] | None = None,
) -> None:
    """Answer seal requests until the owner exits; describe the layer then, or once the
    owner stayed quiet SETTLE seconds after a seal (and then tell `late` when it exits)."""
    import select

    owner = owner_of(owner_pid)
    try:
        exited = os.pidfd_open(owner_pid)
    except OSError:  # gone already, or no pidfd: look every POLL seconds
        exited = None
    poller = select.poll()
    poller.register(requests, select.POLLIN)
    if exited is not None:
        poller.register(exited, select.POLLIN)
    sealed_at: float | None = None
    described = False  # while the owner still runs (a quiet front end, a daemon)
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        if sealed_at is not None and not described:
            wait = SETTLE
        elif exited is None:
            wait = POLL
        else:
            wait = LATE_WAIT if described else -1
        events = dict(poller.poll(wait * 1000 if wait >= 0 else -1))
        if requests in events:
            for word in os.read(requests, 4096).split():
                sealed = seal()
                answer = b" no" if sealed is None else b" ok " + sealed.encode()
                os.write(answers, word + answer + b"\n")
                sealed_at, described = time.monotonic(), False
            continue
        gone = (exited is not None and exited in events) or not is_alive(owner)
        if gone:
            when = time.time()  # fine: a late write's ctime is at most this
            if described and late is not None:
                late(when)  # its writes until now are its own still, not drift
            elif sealed_at is not None and not described:
                _describe(describe, when, out_path)
            return  # never sealed: the next begin closes it as interrupted
        if described:
            return  # quiet for LATE_WAIT after its layer: its later writes are drift
        if sealed_at is not None and time.monotonic() - sealed_at >= SETTLE:
            # Quiet after its post hook: a daemon, or a front end between dpkg runs. A run
            # that joins later voids the seal (this describes nothing then), and its post
            # hook asks this helper again.
            _describe(describe, None, out_path)
            described = True


def _describe(describe: Callable[[float | None], object], when: float | None, out: str) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    describe(when)


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


def wait_for_release(timeout: float = SETTLE) -> float | None:
    """In a helper started by `hand_over`: wait until the manager closes its end of stdin.
    Returns when that was (the manager exited, or went on to another transaction), or None
    when the manager still holds it after `timeout` seconds."""
    import select

    poller = select.poll()
    poller.register(0, select.POLLIN | select.POLLHUP)
    return time.time() if poller.poll(timeout * 1000) else None
