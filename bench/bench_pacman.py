"""Benchmark of the pacman plugin: the time its hooks add to `pacman -S` of a tiny package.

Run as root from the project: `python3 bench/bench_pacman.py [--runs 25]` (ASH_RIG_DIR picks
the rig dir, as for the e2e tier). Three fresh roots of the rig, on the same btrfs image:
  bare     pacman alone (no hooks)
  ash      after `ashctl setup` (the ashlayers alpm hooks; every run makes a layer)
  snapper  a snapper pre/post pair from alpm hooks, as snap-pac does (`snapper --no-dbus`,
           config `ashbench` on the root; needs snapper in the rig's root)
Each round times `pacman -S --noconfirm ashtest-a` in every root (order rotated, a sync before
each, since all roots share one btrfs image), then removes the package again untimed. Prints
the medians of wall time and of CPU time (pacman and its hooks), and `added = variant - bare`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from tests.e2e.mounts import enter_private_namespace  # noqa: E402
from tests.e2e.rig import open_rig  # noqa: E402
from tests.e2e.root import Root  # noqa: E402

TARGET_MS = 40.0
INSTALL = ["pacman", "-S", "--noconfirm", "ashtest-a"]
REMOVE = ["pacman", "-R", "--noconfirm", "ashtest-a"]

SNAPPER_HOOK = """[Trigger]
Operation = Install
Operation = Upgrade
Operation = Remove
Type = Package
Target = *

[Action]
Description = snapper {when} snapshot
When = {When}Transaction
Exec = /bin/sh -c '{command}'
"""
SNAPPER_PRE = (
    "snapper --no-dbus -c ashbench create -t pre -p -c number -d pacman > /tmp/snapper-pre"
)
SNAPPER_POST = (
    "snapper --no-dbus -c ashbench create -t post --pre-number $(cat /tmp/snapper-pre) "
    "-c number -d pacman"
)


def setup_snapper(root: Root) -> str | None:
    """Give `root` a snapper config and pre/post hooks; the reason when it cannot."""
    if not (root.path / "usr/bin/snapper").exists():
        return "snapper is not installed in the rig's root (add it to tests/e2e/rig.py PACKAGES)"
    made = root.run(["snapper", "--no-dbus", "-c", "ashbench", "create-config", "/"], check=False)
    if made.returncode != 0:
        return f"snapper create-config failed: {(made.stderr or made.stdout).strip()}"
    hooks = root.path / "etc/pacman.d/hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    for name, when, command in (
        ("00-snapper-pre", "pre", SNAPPER_PRE),
        ("zz-snapper-post", "post", SNAPPER_POST),
    ):
        text = SNAPPER_HOOK.format(when=when, When=when.capitalize(), command=command)
        (hooks / f"{name}.hook").write_text(text)
    return None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(root: Root, argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, of pacman and its hooks) in ms."""
    cpu = _children_cpu()
    start = time.perf_counter()
    root.run(argv)
    return (time.perf_counter() - start) * 1000, (_children_cpu() - cpu) * 1000


def check_ash(root: Root) -> None:
    """The ash root really makes a layer per run (else the figure would mean nothing)."""
    listed = root.run(["ashctl", "list"]).stdout
    if "pacman -S ashtest-a" not in listed:
        raise SystemExit(f"the ashlayers hooks made no layer:\n{listed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_pacman: needs root (it mounts the rig)", file=sys.stderr)
        return 2
    enter_private_namespace()
    rig = open_rig()
    roots: dict[str, Root] = {}
    try:
        for name in ("bare", "ash", "snapper"):
            roots[name] = rig.new_root(f"bench-{name}-{os.getpid()}")
        roots["ash"].setup()
        why_no_snapper = setup_snapper(roots["snapper"])
        if why_no_snapper:
            roots.pop("snapper").close()
        times, cpu = rounds(roots, INSTALL, REMOVE, args.runs, check_ash)
    finally:
        for root in roots.values():
            root.close()
        rig.close()
    report(times, cpu, args.runs, why_no_snapper)
    return 0


def rounds(
    roots: dict[str, Root],
    install: list[str],
    remove: list[str],
    runs: int,
    check: Callable[[Root], None],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Time `install` in every root `runs` times (order rotated, a sync before each), the
    package removed again untimed after each round; one untimed round first, then `check`
    of the ash root. Returns the wall and CPU times in ms, per root."""
    names = list(roots)
    for root in roots.values():  # warm caches: one untimed round
        root.run(install)
        root.run(remove)
    check(roots["ash"])
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            os.sync()  # each run starts with nothing dirty (one btrfs image for all roots)
            wall, used = timed(roots[name], install)
            times[name].append(wall)
            cpu[name].append(used)
        for name in order:
            roots[name].run(remove)
    return times, cpu


def report(
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    runs: int,
    why_no_snapper: str | None,
    what: str = "pacman -S of a tiny package",
) -> None:
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{what}, median of {runs} runs, ms (load {os.getloadavg()[0]:.1f}):")
    print(f"  {'':8s} {'wall':>7s}  {'quartiles':>15s}  {'cpu':>6s}")
    for name, value in median.items():
        q = statistics.quantiles(times[name], n=4)
        used = statistics.median(cpu[name])
        print(f"  {name:8s} {value:7.1f}  {q[0]:6.1f} .. {q[2]:6.1f}  {used:6.1f}")
    for name in median:
        if name != "bare":
            extra = statistics.median(cpu[name]) - statistics.median(cpu["bare"])
            print(f"cpu time added by {name}: {extra:6.1f} ms")
    ash = median["ash"] - median["bare"]
    print(f"added by the ashlayers hooks: {ash:6.1f} ms")
    if "snapper" in median:
        snap = median["snapper"] - median["bare"]
        print(f"added by a snapper pre/post pair: {snap:6.1f} ms")
        # The bar is a ratio (absolute times move 3x between machines): at most snapper's.
        verdict = "met" if ash <= snap else "NOT met"
        print(f"ratio to snapper's pair: {ash / snap:.2f} (bar: at most 1): {verdict}")
    else:
        print(f"snapper: not measured: {why_no_snapper}")
        print(f"target (under {TARGET_MS:.0f} ms): {'met' if ash < TARGET_MS else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
