"""Who owns a transaction: a process, named by its pid and start time (pids are reused)."""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return raw[raw.rindex(")") + 2 :].split()


def owner_of(pid: int) -> str:
    """A stable identity for a live process: "pid:starttime"."""
    fields = _stat_fields(pid)
    start = fields[19] if fields else "0"
    return f"{pid}:{start}"


def pid_of(owner: str) -> int:
    """The process id of an owner ("pid:starttime", as `owner_of` makes it)."""
    return int(owner.partition(":")[0])


def is_alive(owner: str) -> bool:
    pid, start = pid_of(owner), owner.partition(":")[2]
    fields = _stat_fields(pid)
    if fields is None:
        if os.path.isdir("/proc/self"):
            return False
        try:  # no /proc: the pid alone must do
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # A zombie has finished its work; its start time must match, or the pid was reused.
    return fields[0] != "Z" and (start == "0" or fields[19] == start)


def parent_pid(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else 0


def ancestors(pid: int) -> list[int]:
    """The pids above `pid`, nearest first, up to (excluding) pid 0."""
    chain: list[int] = []
    current = parent_pid(pid)
    while current > 0 and current not in chain:
        chain.append(current)
        current = parent_pid(current)
    return chain


def started_at(owner: str) -> float | None:
    """When the owner's process started, on the clock ctime is stamped from (realtime), or
    None when that cannot be told. Precise to a clock tick (10 ms): /proc gives the start in
    ticks of the boot-time clock."""
    start = owner.partition(":")[2]
    if not start.isdigit() or start == "0":
        return None
    import time

    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return boot + int(start) / os.sysconf("SC_CLK_TCK")
