"""The first thing a pre hook does: start the filesystem commit its begin will wait for.

`Btrfs.sync` commits btrfs's running transaction so that the drift check's tree search sees
every change; the start of a commit alone takes milliseconds. A hook's launcher calls
`start_commit("/")` before it imports anything else (this module needs only `os` and `time`),
so that the commit runs in a child process while Python loads the rest; `Btrfs.sync` then
takes its result (`early_start`) and only waits for it.
"""

from __future__ import annotations

import os
import time


def ctime_now() -> float:
    """Now, on the clock the kernel stamps ctime from (coarse: a write after this moment
    has a ctime >= it; a write in the same tick before it may too, which only costs a probe)."""
    return time.clock_gettime(CLOCK_REALTIME_COARSE)


CLOCK_REALTIME_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)  # Linux's clock id 5

_started: dict[str, tuple[int, int, float]] = {}  # path -> (pipe, child pid, monotonic)
FRESH = 0.5  # seconds: an older start (the begin waited for a lock) is started again


def start_commit(path: str) -> None:
    """Start the commit a begin waits for (`Btrfs.sync`) in a child process: a hook calls
    this first thing, so that the filesystem commits (the start alone takes milliseconds)
    while Python imports the rest. Any error is left for the begin to meet."""
    path = os.path.abspath(path)
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return
    if pid == 0:  # the child: the ctime clock, then the commit's start; says both, exits
        code = 1
        try:
            os.close(read_end)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # a manager that waits for its hook's output to end waits not
                os.dup2(null, fd)
            when = ctime_now()
            import btrfsutil

            os.write(write_end, f"{btrfsutil.start_sync(path)} {when!r}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _started[path] = (read_end, pid, time.monotonic())


def early_start(path: str) -> tuple[int, float] | None:
    """(transid, ctime before it) of the commit start_commit began for `path`, if fresh."""
    started = _started.pop(path, None)
    if started is None:
        return None
    read_end, pid, at = started
    try:
        data = os.read(read_end, 64)
        os.waitpid(pid, 0)
    except OSError:
        return None
    finally:
        os.close(read_end)
    if time.monotonic() - at > FRESH:
        return None
    try:
        transid, when = data.split()
        return int(transid), float(when)
    except ValueError:  # the child failed: nothing was started
        return None
