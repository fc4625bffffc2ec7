"""Benchmark of `ashctl blame` on a long history: 1,000 layers on the deployment's line.

Run as root: `python3 bench/bench_blame.py [--layers 1000] [--runs 7]`. Makes a btrfs loop
image, sets a root up (layer 1, the base), then adds synthetic layer records on one line
(records, manifests and change lists, no snapshots: what blame reads), each with a change
list like a package operation's (20 to 2,000 paths; every 50th names /etc/ssh/sshd_config,
every 10th is compressed), makes the last the deployment's layer, and times `ashctl blame`
as a whole process (interpreter start included): a file, a folder, a path no layer changed,
and `--all`. Prints medians and the bar (1 s for 1,000 layers).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def grow(root: str, count: int) -> None:
    """`count` synthetic layers on the deployment's line, each with its change list."""
    from ashcore.changes import Changes, write_changes
    from ashcore.layers import write_manifest
    from ashcore.model import Layer, PackageDelta, Status
    from ashcore.store import now_iso
    from ashcore.target import Target

    rng = random.Random(24)
    target = Target(root)
    store = target.store
    parent = store.layers()[-1].id
    with store.transaction(store.db):
        for n in range(count):
            layer_id = parent + 1
            package = f"pkg{n}"
            layer = Layer(
                id=layer_id,
                name=f"apt-get install {package}",
                parent=parent,
                manager="bench",
                command=f"apt-get install {package}",
                status=Status.COMMITTED,
                created=now_iso(),
                finished=now_iso(),
                packages=PackageDelta(added=((package, "1.0"),)),
                size=4096,
            )
            store.insert_layer(layer, plugin="bench")
            write_manifest(store, layer, "bench", None, None)
            files = rng.choice((20, 50, 200, 2000))
            paths = [f"usr/share/doc/{package}/f{i}" for i in range(files)]
            paths += [f"usr/lib/{package}/lib{i}.so" for i in range(files // 10)]
            paths += ["var/lib/dpkg/status", "var/lib/dpkg/status-old"]
            if n % 50 == 0:
                paths.append("etc/ssh/sshd_config")
            write_changes(store, layer_id, Changes.of(parent, paths))
            parent = layer_id
        store.set_head(target.deployment().uuid, parent, None)
    store.close()


def time_blame(root: str, runs: int, python: str, *args: str) -> tuple[list[float], str]:
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(
            [python, "-m", "ashcore.cli", "--root", root, "blame", *args],
            check=True,
            capture_output=True,
            text=True,
            cwd=TOP,
        ).stdout
        times.append((time.perf_counter() - start) * 1000)
    return times, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ash-bench-blame-"))
    img, top, root = work / "fs.img", work / "top", work / "root"
    top.mkdir()
    root.mkdir()
    with open(img, "wb") as f:
        f.truncate(2 << 30)
    sh("mkfs.btrfs", "-q", "-f", str(img))
    dev = sh("losetup", "--find", "--show", str(img))
    try:
        sh("mount", dev, str(top))
        sh("btrfs", "subvolume", "create", str(top / "@root"))
        (top / "@root/etc").mkdir()
        (top / "@root/usr/sbin").mkdir(parents=True)
        (top / "@root/usr/sbin/btrfs").symlink_to(shutil.which("btrfs") or "/usr/bin/btrfs")
        sh("mount", "-o", "subvol=@root", dev, str(root))
        sh(sys.executable, "-m", "ashcore.cli", "--root", str(root), "setup")
        t0 = time.perf_counter()
        grow(str(root), args.layers)
        print(f"{args.layers} layers grown in {time.perf_counter() - t0:.1f} s; runs: {args.runs}")
        kept = sum(p.stat().st_size for p in (root / ".ash/layers").glob("*.changes"))
        print(f"change lists: {kept / 1024:.0f} KiB on disk")
        worst = 0.0
        for what in (
            ("/etc/ssh/sshd_config",),
            ("/usr/lib",),
            ("/etc/nothing",),
            ("--all", "/etc/ssh/sshd_config"),
            ("--json", "/etc/ssh/sshd_config"),
        ):
            times, out = time_blame(str(root), args.runs, args.python, *what)
            found = out.splitlines()[0] if out else ""
            median = statistics.median(times)
            worst = max(worst, median)
            print(
                f"  blame {' '.join(what)}: median {median:.0f} ms (min {min(times):.0f});"
                f" {found[:70]}"
            )
        bar = 1000 * args.layers / 1000
        print(f"the slowest median: {worst:.0f} ms (bar: {bar:.0f} ms for {args.layers} layers)")
    finally:
        subprocess.run(["umount", "-R", str(root)], check=False)
        subprocess.run(["umount", str(top)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
        img.unlink()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
