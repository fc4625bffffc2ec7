"""The drift check's probe, taken first thing by a hook's launcher, while Python loads.

The begin compares the deployment with its head layer through a read-only snapshot of it, the
probe: a snapshot holds every write made so far, buffered ones too. Making it commits a btrfs
transaction and writes out the dirty data first, which costs tens of milliseconds after an
apt run (30 ms in the rig; 3 ms when nothing is dirty). So a hook's launcher (a shell script)
starts `btrfs subvolume snapshot -r ROOT STORE/layers/probe.$$` in the background before it
execs Python, and names that process in ASH_EARLY_PROBE; the begin waits for it and takes the
probe over (`take_early`), or deletes it and takes a fresh one when it may be stale.

Lock files are in such a probe (the CLI cannot leave them out): the drift check ignores them,
and they are removed before a probe becomes a drift layer (drift.capture_drift).
"""

from __future__ import annotations

import os

FRESH = 0.5  # seconds: an older probe (the begin waited for a lock) is taken again
VARIABLE = "ASH_EARLY_PROBE"


def early_path(layers_dir: str) -> str:
    """Where the launcher put this process's probe (`probe.$$`: the shell's pid is ours)."""
    return os.path.join(layers_dir, f"probe.{os.getpid()}")


def take_early(layers_dir: str) -> tuple[str, float] | None:
    """(path, a time before it was taken) of the launcher's probe, once it is complete;
    None when there is none. The time is -1 when it is older than FRESH seconds (the caller
    deletes it)."""
    pid_text = os.environ.pop(VARIABLE, "")
    if not pid_text.isdigit():
        return None
    import time

    from ashcore.process import owner_of, started_at

    # When the snapshot's process started: before the snapshot (to a clock tick below).
    began = started_at(owner_of(int(pid_text)))
    try:
        _, status = os.waitpid(int(pid_text), 0)
    except ChildProcessError:  # not ours (a stray variable): look no further
        return None
    path = early_path(layers_dir)
    if status != 0 or began is None or not os.path.isdir(path):
        return (path, -1.0) if os.path.lexists(path) else None
    return path, (began if time.time() - began <= FRESH else -1.0)
