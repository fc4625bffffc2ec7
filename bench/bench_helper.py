"""Benchmark: how long after the manager exits its layer is made (the helper's own time).

The hooks leave the layer to a helper process that makes it once the manager has exited
(ashcore/linger.py; dnf4: plugins/dnf/dnf4helper.py), so the other benchmarks time only what
the manager waits for. This one times the rest. Run as root from the project:
`python3 bench/bench_helper.py [--runs 15]` (ASH_RIG_DIR as for the e2e tier).

In one fresh root of the rig with `ashctl setup` done, for apt-get, pacman, dnf5 and dnf4 in
turn: install a tiny package, then, from the moment the command returns, wait until the helper
named in /.ash/run/commit is gone (looking every 0.5 ms); remove the package (untimed, its
helper waited for too). Prints the median and quartiles of that wait, per manager, and checks
that every install made its layer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

MANAGERS = {
    "apt-get": (
        ["apt-get", "install", "-y", "ashtest-a"],
        ["apt-get", "remove", "-y", "ashtest-a"],
    ),
    "pacman": (
        ["pacman", "-S", "--noconfirm", "ashtest-a"],
        ["pacman", "-R", "--noconfirm", "ashtest-a"],
    ),
    "dnf5": (["dnf5", "install", "-y", "ashtest-a"], ["dnf5", "remove", "-y", "ashtest-a"]),
    "dnf4": (
        ["dnf", "--releasever=sid", "install", "-y", "ashtest-a"],
        ["dnf", "--releasever=sid", "remove", "-y", "ashtest-a"],
    ),
}

# Runs inside the root: argv[1] = runs, argv[2] = install (JSON), argv[3] = remove (JSON).
TIMER = r"""
import json, os, subprocess, sys, time

def helper_gone():
    try:
        with open("/.ash/run/commit") as f:
            helper = f.read().split()[0]
        pid, start = helper.split(":")
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return True
    return fields[0] == "Z" or fields[19] != start

def wait():
    t = time.perf_counter()
    while not helper_gone():
        time.sleep(0.0005)
    return (time.perf_counter() - t) * 1000

runs, install, remove = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
times = []
for i in range(runs + 1):
    subprocess.run(install, check=True, capture_output=True)
    took = wait()
    if i:  # the first is a warm-up
        times.append(took)
    subprocess.run(remove, check=True, capture_output=True)
    wait()
print(json.dumps(times))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_helper: needs root (the rig mounts btrfs and chroots)", file=sys.stderr)
        return 2
    from tests.e2e.rig import open_rig

    rig = open_rig()
    root = None
    try:
        root = rig.new_root("bench-helper")
        root.setup()
        print(
            f"the layer made after the manager exits: {args.runs} runs each (+1 warm-up), "
            "ms from the command's return until its helper is gone"
        )
        for name, (install, remove) in MANAGERS.items():
            before = len(json.loads(root.run(["ashctl", "list", "--json"]).stdout))
            out = root.run(
                ["python3", "-c", TIMER, str(args.runs), json.dumps(install), json.dumps(remove)]
            ).stdout
            times = json.loads(out)
            made = len(json.loads(root.run(["ashctl", "list", "--json"]).stdout)) - before
            q = statistics.quantiles(times, n=4)
            print(
                f"  {name:<8} median {statistics.median(times):6.1f}  "
                f"q1 {q[0]:6.1f}  q3 {q[2]:6.1f}  ({made} layers for {2 * (args.runs + 1)} runs)"
            )
        return 0
    finally:
        if root is not None:
            root.close()
        rig.close()


if __name__ == "__main__":
    sys.exit(main())
