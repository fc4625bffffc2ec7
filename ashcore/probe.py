"""The drift check's probe, taken first thing by a hook, while Python loads the rest.

The begin compares the deployment with its head layer through a read-only snapshot of it, the
probe: a snapshot holds every write made so far, buffered ones too. Making it commits a btrfs
transaction, which costs tens of milliseconds on some storage (the commit's flush). A hook's
launcher calls `start_probe(root)` before it imports anything else (this module needs only
`os` and `time`): a child process takes the probe at `layers/probe.<hook pid>` while the
hook's interpreter imports the core, and the begin then takes it over (`take_early`), or
deletes it and takes a fresh one when it may be stale.
"""

from __future__ import annotations

import os
import time

FRESH = 0.5  # seconds: an older probe (the begin waited for a lock) is taken again
_started: dict[str, tuple[int, int, float, str]] = {}  # root -> (pipe, child, monotonic, path)


def early_path(layers_dir: str, pid: int) -> str:
    return os.path.join(layers_dir, f"probe.{pid}")


def start_probe(root: str) -> None:
    """Take the probe of `root` in a child process. Any error is left for the begin to meet."""
    root = os.path.abspath(root)
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return
    if pid == 0:  # the child: the snapshot, then what it made; exits
        code = 1
        try:
            os.close(read_end)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # a manager that waits for its hook's output to end waits not
                os.dup2(null, fd)
            from ashcore.btrfs import Btrfs
            from ashcore.clock import ctime_now
            from ashcore.config import load_config

            config = load_config(root)
            layers = os.path.join(root, config.store.lstrip("/"), "layers")
            path = early_path(layers, os.getppid())
            if os.path.isdir(layers) and not os.path.lexists(path):
                when = ctime_now()
                Btrfs().snapshot(root, path, read_only=True, drop=config.lock_files)
                os.write(write_end, f"{when!r} {path}".encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _started[root] = (read_end, pid, time.monotonic(), "")


def take_early(root: str) -> tuple[str, float] | None:
    """(path, ctime before it) of the probe `start_probe` took of `root`, if it is there,
    complete and fresh; None otherwise (a stale one is deleted by `discard_early`'s caller)."""
    started = _started.pop(os.path.abspath(root), None)
    if started is None:
        return None
    read_end, pid, at, _ = started
    try:
        data = os.read(read_end, 4096)
        os.waitpid(pid, 0)
    except OSError:
        return None
    finally:
        os.close(read_end)
    try:
        when, path = data.decode().split(" ", 1)
    except ValueError:  # the child failed: nothing was taken
        return None
    if time.monotonic() - at > FRESH:
        return path, -1.0  # there, but stale: the caller deletes it
    return path, float(when)
