"""Run `ashctl` and SIGKILL it when it reaches its Nth executed line of the core's state code.

Usage: python -m tests.btrfs.crashrun N ASHCTL-ARGS...  (N = 0: never; prints the count)
ASH_CRASH_ONLY=rollback,mounts counts only the lines of those modules (a denser sweep of them).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

ONLY = os.environ.get("ASH_CRASH_ONLY")
WATCHED = tuple(
    f"/ashcore/{name}.py"
    for name in (
        ONLY.split(",")
        if ONLY
        else (
            "lifecycle",
            "store",
            "ondisk",
            "btrfs",
            "rollback",
            "deployments",
            "mounts",
            "caches",
            "doctor",
        )
    )
)
count = 0
limit = int(sys.argv[1])


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    global count
    if event == "line":
        count += 1
        if count == limit:
            os.kill(os.getpid(), signal.SIGKILL)
    return _local


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    return _local if frame.f_code.co_filename.endswith(WATCHED) else None


sys.settrace(_global)
from ashcore.cli import main  # noqa: E402

code = main(sys.argv[2:])
sys.settrace(None)
sys.stderr.write(f"LINES {count}\n")
sys.exit(code)
