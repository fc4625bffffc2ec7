"""Benchmark: replay time against the managers' own time for the same operations, in the rig.

Run as root from the project: `python3 bench/bench_replay.py [--runs 3]` (ASH_RIG_DIR as for
the e2e tier). Per run, a fresh root of the rig with `ashctl setup` done makes five layers:
  apt-get install ashtest-v           (the layer removed)
  apt-get install ashtest-b
  dnf5 install ashtest-v
  pacman -S --overwrite '*' ashtest-a
  dnf-3 install ashtest-a
each timed (wall clock of the chrooted command, hooks included: what the user waited), then
`ashctl --root R remove <first>` from the host, timed whole (the new deployment, its mounts,
the four operations again with their hooks, the switch). The ratio is the replay's time over
the managers' own time for the four operations replayed. Bar: at most 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

FIRST = ["apt-get", "install", "-y", "-q", "ashtest-v"]
REPLAYED = [
    ["apt-get", "install", "-y", "-q", "ashtest-b"],
    ["dnf5", "install", "-y", "-q", "ashtest-v"],
    ["pacman", "-S", "--noconfirm", "--overwrite", "*", "ashtest-a"],
    ["dnf-3", "install", "-y", "-q", "ashtest-a"],
]
BAR = 1.2


def timed(root: object, argv: list[str]) -> float:
    start = time.perf_counter()
    root.run(argv)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def one_run(rig: object, n: int) -> tuple[float, float, list[float]]:
    root = rig.new_root(f"bench-replay-{n}")  # type: ignore[attr-defined]
    try:
        root.setup()
        timed(root, FIRST)
        own = [timed(root, argv) for argv in REPLAYED]
        layers = json.loads(root.run(["ashctl", "list", "--json"]).stdout)
        first = next(
            x["id"] for x in layers if x["manager"] == "apt" and x["command"].endswith("ashtest-v")
        )
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), "remove", str(first)],
            capture_output=True,
            text=True,
            cwd=TOP,
        )
        replay = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"bench_replay: the replay failed: {done.stderr.strip()}")
        steps = [
            float(line.rsplit(" in ", 1)[1].split()[0])
            for line in done.stdout.splitlines()
            if line.startswith("      layer ") and " in " in line
        ]
        return sum(own), replay, steps
    finally:
        root.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_replay: needs root (the rig mounts btrfs and chroots)", file=sys.stderr)
        return 2
    from tests.e2e.rig import open_rig

    rig = open_rig()
    try:
        results = [one_run(rig, n) for n in range(args.runs)]
    finally:
        rig.close()
    own = [r[0] for r in results]
    replay = [r[1] for r in results]
    ratios = [r[1] / r[0] for r in results]
    print(f"4 operations (apt, dnf5, pacman, dnf4), {args.runs} runs, wall clock, s")
    print(
        f"  managers' own time  median {statistics.median(own):6.2f}  (runs: "
        + ", ".join(f"{x:.2f}" for x in own)
        + ")"
    )
    print(
        f"  ashctl remove       median {statistics.median(replay):6.2f}  (runs: "
        + ", ".join(f"{x:.2f}" for x in replay)
        + ")"
    )
    print("  replayed steps, s: " + "; ".join(", ".join(f"{s:.2f}" for s in r[2]) for r in results))
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio <= BAR else "FAIL"
    print(f"{verdict}: replay / managers' own time = {ratio:.2f} (bar: {BAR})")
    return 0 if ratio <= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
