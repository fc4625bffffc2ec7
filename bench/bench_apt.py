"""Benchmark: the time the apt hooks add to `apt-get install` of a tiny package, in the rig.

Run as root from the project: `python3 bench/bench_apt.py [--runs 25]` (ASH_RIG_DIR as for the
e2e tier). Three fresh roots of the rig, measured side by side, round-robin in one run:
  without   no hooks (snapper is installed there too but has no config: its hook is a no-op)
  ashlayers `ashctl setup` done: apt's and dpkg's hooks make one layer per run
  snapper   Debian's own apt hook (/etc/apt/apt.conf.d/80snapper: a pre and a post snapshot
            per run, then `snapper cleanup number`), with a config `root` in that root and
            `snapper` run as `snapper --no-dbus` (no D-Bus daemon in a chroot)
Each timed run is `apt-get install -y ashtest-a` chrooted into the root (wall clock, from the
host); an untimed `apt-get remove -y ashtest-a` (hooked too) follows it. Prints the medians
and the medians of the added time (with minus without, run by run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

INSTALL = ["apt-get", "install", "-y", "-q", "ashtest-a"]
REMOVE = ["apt-get", "remove", "-y", "-q", "ashtest-a"]
SNAPPER_WRAPPER = '#!/bin/sh\nexec /usr/bin/snapper --no-dbus "$@"\n'
TARGET_MS = 40.0


def snapper_setup(root: object) -> str | None:
    """Make Debian's snapper apt hook live in this root; why not, or None when it is."""
    run: Callable[..., object] = root.run  # type: ignore[attr-defined]
    path: Path = root.path  # type: ignore[attr-defined]
    if not (path / "usr/bin/snapper").exists():
        return "snapper is not installed in the rig's root (add it to the rig's package list)"
    if not (path / "etc/apt/apt.conf.d/80snapper").exists():
        return "snapper's apt hook /etc/apt/apt.conf.d/80snapper is missing"
    wrapper = path / "usr/local/sbin/snapper"  # first in the chroot's PATH
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(SNAPPER_WRAPPER)
    wrapper.chmod(0o755)
    done = run(["snapper", "-c", "root", "create-config", "/"], check=False)
    if done.returncode != 0:  # type: ignore[attr-defined]
        return f"snapper create-config failed: {done.stderr.strip()}"  # type: ignore[attr-defined]
    return None


def snapshots(root: object) -> int:
    out = root.run(["snapper", "-c", "root", "--csvout", "list"]).stdout  # type: ignore[attr-defined]
    return max(0, len(out.strip().splitlines()) - 1)


def layer_count(root: object) -> int:
    import json

    out = root.run(["ashctl", "list", "--json"]).stdout  # type: ignore[attr-defined]
    return len(json.loads(out))


def timed(root: object) -> float:
    start = time.perf_counter()
    root.run(INSTALL)  # type: ignore[attr-defined]
    elapsed = (time.perf_counter() - start) * 1000
    root.run(REMOVE)  # type: ignore[attr-defined]
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="timed runs per root (>= 20)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_apt: needs root (the rig mounts btrfs and chroots)", file=sys.stderr)
        return 2
    from tests.e2e.rig import open_rig

    rig = open_rig()
    roots: dict[str, object] = {}
    try:
        roots["without"] = rig.new_root("bench-apt-without")
        roots["ashlayers"] = rig.new_root("bench-apt-ashlayers")
        roots["ashlayers"].setup()  # type: ignore[attr-defined]
        snap_root = rig.new_root("bench-apt-snapper")
        roots["snapper"] = snap_root
        why_no_snapper = snapper_setup(snap_root)
        if why_no_snapper:
            print(f"snapper: NOT MEASURED: {why_no_snapper}")
            del roots["snapper"]
        names = list(roots)
        times: dict[str, list[float]] = {n: [] for n in names}
        marks = {
            "ashlayers": layer_count(roots["ashlayers"]),
            **({"snapper": snapshots(roots["snapper"])} if "snapper" in roots else {}),
        }
        for i in range(args.warmup + args.runs):
            for name in names if i % 2 == 0 else reversed(names):
                t = timed(roots[name])
                if i >= args.warmup:
                    times[name].append(t)
        made = {"ashlayers": layer_count(roots["ashlayers"]) - marks["ashlayers"]}
        if "snapper" in roots:
            made["snapper"] = snapshots(roots["snapper"]) - marks["snapper"]
        runs = args.warmup + args.runs
        print(
            f"apt-get install -y ashtest-a, {args.runs} timed runs per root (+{args.warmup} "
            "warm-up), round-robin; wall clock of the chrooted command, ms"
        )
        for name in names:
            t = times[name]
            q = statistics.quantiles(t, n=4)
            print(
                f"  {name:<10} median {statistics.median(t):7.1f}  "
                f"q1 {q[0]:7.1f}  q3 {q[2]:7.1f}  min {min(t):7.1f}"
            )
        base = times["without"]
        print("added by the hooks (with minus without, run by run), ms:")
        added: dict[str, float] = {}
        for name in names[1:]:
            diffs = [a - b for a, b in zip(times[name], base, strict=True)]
            added[name] = statistics.median(diffs)
            print(
                f"  {name:<10} median {added[name]:7.1f}  "
                f"(difference of medians "
                f"{statistics.median(times[name]) - statistics.median(base):.1f})"
            )
        print(
            f"made: ashlayers {made['ashlayers']} layers for {2 * runs} runs (install+remove)"
            + (
                f"; snapper {made['snapper']} snapshots (a pre and a post per run)"
                if "snapper" in made
                else ""
            )
        )
        # The bar is a ratio (absolute times move 3x between machines): at most snapper's.
        verdict = [f"ashlayers adds {added['ashlayers']:.1f} ms"]
        if "snapper" in added:
            ratio = added["ashlayers"] / added["snapper"]
            verdict.append(f"snapper adds {added['snapper']:.1f} ms; ratio {ratio:.2f}")
            ok = ratio <= 1.0
        else:
            verdict.append(f"snapper not measured (then: under {TARGET_MS:.0f} ms)")
            ok = added["ashlayers"] < TARGET_MS
        print(("PASS: " if ok else "MISS: ") + "; ".join(verdict))
        return 0
    finally:
        for root in roots.values():
            root.close()  # type: ignore[attr-defined]
        if "snapper" not in roots and "snap_root" in locals():
            snap_root.close()
        rig.close()


if __name__ == "__main__":
    sys.exit(main())
