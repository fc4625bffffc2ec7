"""Benchmark: the time the dnf hooks add to `dnf5 install` and `dnf install` of a tiny package.

Run as root from the project: `python3 bench/bench_dnf.py [--runs 25]` (ASH_RIG_DIR as for the
e2e tier). Two fresh roots of the rig, measured side by side, round-robin in one run:
  without   no hooks (the rig's golden root: nothing installed by `ashctl setup`)
  ashlayers `ashctl setup` done: dnf5's actions hook and dnf4's plugin make one layer per run
Each timed run is `<dnf> install -y ashtest-a` chrooted into the root (wall clock, from the
host); an untimed `<dnf> remove -y ashtest-a` (hooked too) follows it. Prints the medians and
the median of the added time (with minus without, run by run), then what one hook process
costs before it does any work (dnf5 starts one Python, its begin; the commit is a shell script
that hands over to it). The layer itself is made by a helper once dnf has exited, off the
timed run (the untimed remove that follows waits for it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

MANAGERS = ("dnf5", "dnf")
TARGET_MS = 40.0
HOOK = "/usr/libexec/ashlayers/dnf5-hook"
STARTS = {
    "python3 -I -c pass (an interpreter, with site)": ["/usr/bin/python3", "-I", "-c", "pass"],
    "dnf5-hook with ASH_SKIP=1 (no Python)": ["env", "ASH_SKIP=1", HOOK, "commit", "/", "1", "/"],
    "dnf5-hook to ready (python -S + imports)": [HOOK, "usage"],
    "python3 -I -c 'import rpm' (off the hot path)": ["/usr/bin/python3", "-I", "-c", "import rpm"],
}


def timed(root: Any, dnf: str) -> float:
    start = time.perf_counter()
    root.run([dnf, "install", "-y", "-q", "ashtest-a"])
    elapsed = (time.perf_counter() - start) * 1000
    root.run([dnf, "remove", "-y", "-q", "ashtest-a"])
    return elapsed


def startup(root: Any, argv: list[str], runs: int) -> float:
    script = (
        "import subprocess, statistics, time\n"
        "t = []\n"
        f"for _ in range({runs}):\n"
        "    s = time.perf_counter()\n"
        f"    subprocess.run({argv!r}, stderr=subprocess.DEVNULL)\n"
        "    t.append((time.perf_counter() - s) * 1000)\n"
        "print(statistics.median(t))\n"
    )
    return float(root.run(["python3", "-c", script]).stdout)


def layer_count(root: Any) -> int:
    import json

    return len(json.loads(root.run(["ashctl", "list", "--json"]).stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="timed runs per root (>= 20)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_dnf: needs root (the rig mounts btrfs and chroots)", file=sys.stderr)
        return 2
    from tests.e2e.rig import open_rig

    rig = open_rig()
    try:
        without = rig.new_root(f"bench-dnf-without-{os.getpid()}")
        hooked = rig.new_root(f"bench-dnf-with-{os.getpid()}")
        try:
            hooked.setup()
            return measure(without, hooked, args.runs, args.warmup)
        finally:
            hooked.close()
            without.close()
    finally:
        rig.close()


def measure(without: Any, hooked: Any, runs: int, warmup: int) -> int:
    times: dict[tuple[str, str], list[float]] = {}
    layers_before = layer_count(hooked)
    for i in range(warmup + runs):
        for dnf in MANAGERS:
            for label, root in (("without", without), ("ashlayers", hooked)):
                elapsed = timed(root, dnf)
                if i >= warmup:
                    times.setdefault((dnf, label), []).append(elapsed)
    made = layer_count(hooked) - layers_before
    print(
        f"bench_dnf: {runs} timed runs per root and manager (+{warmup} warm-up), "
        f"install -y ashtest-a; {made} layers made in the hooked root"
    )
    worst = 0.0
    for dnf in MANAGERS:
        plain, with_hooks = times[(dnf, "without")], times[(dnf, "ashlayers")]
        added = [w - p for w, p in zip(with_hooks, plain, strict=True)]
        median_added = statistics.median(added)
        of_medians = statistics.median(with_hooks) - statistics.median(plain)
        worst = max(worst, median_added)
        print(
            f"  {dnf:5} without {statistics.median(plain):7.1f} ms   "
            f"with {statistics.median(with_hooks):7.1f} ms   "
            f"added (median of run-by-run differences) {median_added:6.1f} ms   "
            f"(difference of medians {of_medians:6.1f})"
        )
    print("  one hook process before it works (median of 20, in the root):")
    for label, argv in STARTS.items():
        print(f"    {label:50} {startup(hooked, argv, 20):6.1f} ms")
    verdict = "meets" if worst < TARGET_MS else "misses"
    print(f"  target: under {TARGET_MS:.0f} ms each: {verdict} it (worst {worst:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
