"""The clock the kernel stamps ctime from, for telling writes before a moment from later ones."""

from __future__ import annotations

import time

CLOCK_REALTIME_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)  # Linux's clock id 5


def ctime_now() -> float:
    """Now, on the clock the kernel stamps ctime from (coarse: a write after this moment
    has a ctime >= it; a write in the same tick before it may too, which only costs a look)."""
    return time.clock_gettime(CLOCK_REALTIME_COARSE)
