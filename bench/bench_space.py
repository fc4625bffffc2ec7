"""Benchmark: the disk space one `apt-get install` of a tiny package costs, with sid's full list.

Run as root from the project: `.venv/bin/python bench/bench_space.py [--ops 10]` (ASH_RIG_DIR
as for the e2e tier; fetches sid's main Packages.xz once into the rig cache). Two fresh roots
of the rig, both given sid's full package list first (apt's pkgcache.bin then ~70 MB):
  ashlayers  `ashctl setup` done: every apt run makes a layer
  without    no hooks: what apt itself adds (its logs), for comparison
In each, `apt-get install -y ashtest-a` and `apt-get remove -y ashtest-a` alternate (--ops in
all, after one untimed pair). Around each operation the filesystem's used bytes are read once
everything is freed (tests/e2e/space.py: sync, subvolume sync, two commits, `btrfs filesystem
df`). Prints per operation the growth (data; metadata, one copy), the paths that differ from
its parent layer and their allocated bytes by folder (`btrfs send --no-data -p`), each
layer's exclusive data at the end (`btrfs filesystem du`), and a verdict against the bar:
an operation grows the used bytes at most 1 MiB beyond the package's own files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from tests.e2e.command import run  # noqa: E402
from tests.e2e.rig import open_rig  # noqa: E402
from tests.e2e.root import Root  # noqa: E402
from tests.e2e.sidlist import add_full_list, change_list, packages_xz  # noqa: E402
from tests.e2e.space import MiB, Usage, own_bytes, used  # noqa: E402

PACKAGE = "ashtest-a"
BAR = 1 * MiB
ORPHAN = re.compile(r"o\d+-\d+-\d+(/|$)")  # a send stream's temporary name
# Folders the changed paths are summed by (the longest that matches), else the top two.
FOLDERS = (
    "var/lib/dpkg/info",
    "var/lib/dpkg",
    "var/lib/apt/lists",
    "var/lib/apt",
    "var/cache/debconf",
    "var/cache/apt",
    "var/cache/man",
    "var/cache/ldconfig",
    "var/log",
    "etc",
    "usr/share/ashtest",
)


def folder_of(path: str) -> str:
    match = [f for f in FOLDERS if path == f or path.startswith(f + "/")]
    if match:
        return max(match, key=len)
    return "/".join(path.split("/")[:2])


def changed_files(old: Path, new: Path) -> dict[str, int]:
    """Path -> allocated bytes in `new`, for each path `btrfs send -p old new` names."""
    dump = run(
        [
            "sh",
            "-c",
            f"btrfs send --no-data -q -p '{old}' '{new}' | btrfs receive --dump",
        ]
    ).stdout
    paths: set[str] = set()
    for line in dump.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] in ("snapshot", "subvol"):
            continue
        named = [words[1]] + [w.removeprefix("dest=") for w in words[2:] if w.startswith("dest=")]
        for word in named:
            rel = word.removeprefix("./").split("/", 1)
            if len(rel) == 2 and not ORPHAN.match(rel[1]):
                paths.add(rel[1].replace("\\ ", " "))
    sizes: dict[str, int] = {}
    for rel in sorted(paths):
        p = new / rel
        try:
            st = p.lstat()
        except FileNotFoundError:
            sizes[rel] = 0
            continue
        sizes[rel] = st.st_blocks * 512 if p.is_file() and not p.is_symlink() else 0
    return sizes


def exclusive(path: Path) -> tuple[int, int]:
    """(total, exclusive) data bytes of the subvolume at path, by `btrfs filesystem du`."""
    out = run(["btrfs", "filesystem", "du", "-s", "--raw", str(path)]).stdout.splitlines()
    total, excl, *_ = out[-1].split()
    return int(total), int(excl)


def layer_ids(root: Root) -> list[int]:
    return [int(x["id"]) for x in json.loads(root.ashctl("list", "--json").stdout)]


def listed_parent(root: Root, layer: int) -> int:
    listed = {int(x["id"]): x for x in json.loads(root.ashctl("list", "--json").stdout)}
    return int(listed[layer]["parent"])


def kib(n: float) -> str:
    return f"{n / 1024:9.1f}"


def measure(root: Root, top: Path, ops: int, layered: bool) -> list[tuple[str, Usage, int]]:
    """Runs the operations; per operation (command, growth, id of the layer it made or 0)."""
    done: list[tuple[str, Usage, int]] = []
    for i in range(ops + 2):
        verb = "install" if i % 2 == 0 else "remove"
        argv = ["apt-get", verb, "-y", "-q", PACKAGE]
        before = used(top)
        root.run(argv)
        newest = layer_ids(root)[-1] if layered else 0  # waits for the helper to be done
        growth = used(top) - before
        if i >= 2:
            done.append((f"apt-get {verb}", growth, newest))
    return done


def measure_updates(root: Root, top: Path, xz: Path, cycles: int) -> list[tuple[str, Usage, int]]:
    """`apt-get update` with a changed list, then an install or a remove: per cycle."""
    done: list[tuple[str, Usage, int]] = []
    for i in range(cycles):
        verb = "install" if i % 2 == 0 else "remove"
        change_list(root, xz, i)
        before = used(top)
        root.run(["apt-get", "update", "-q"])
        root.run(["apt-get", verb, "-y", "-q", PACKAGE])
        newest = layer_ids(root)[-1]
        done.append((f"update+{verb}", used(top) - before, newest))
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ops", type=int, default=10, help="measured operations per root")
    parser.add_argument("--no-control", action="store_true", help="skip the root without hooks")
    parser.add_argument(
        "--updates", type=int, default=2, help="then: cycles of apt-get update (a changed list)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_space: needs root (the rig mounts btrfs and chroots)", file=sys.stderr)
        return 2
    xz = packages_xz()
    rig = open_rig()
    roots: list[Root] = []
    try:
        top = rig.paths.top
        ash = rig.new_root("bench-space-ashlayers")
        roots.append(ash)
        pkgcache = add_full_list(ash, xz)
        ash.setup()
        results = {"ashlayers": measure(ash, top, args.ops, True)}
        updates = measure_updates(ash, top, xz, args.updates) if args.updates else []
        if not args.no_control:
            bare = rig.new_root("bench-space-without")
            roots.append(bare)
            add_full_list(bare, xz)
            results["without"] = measure(bare, top, args.ops, False)
        own = 0
        ash.run(["apt-get", "install", "-y", "-q", PACKAGE])
        own = own_bytes(ash, PACKAGE)
        lists = sum(
            f.stat().st_size for f in (ash.path / "var/lib/apt/lists").iterdir() if f.is_file()
        )
        print(
            f"sid main {xz.name} ({xz.stat().st_size / MiB:.1f} MiB): lists "
            f"{lists / MiB:.1f} MiB, pkgcache.bin {pkgcache / MiB:.1f} MiB; "
            f"{PACKAGE} files {own} bytes"
        )
        print(f"growth of the filesystem's used bytes per operation, KiB ({args.ops} ops):")
        print(f"  {'root':<10} {'op':<18} {'data':>9} {'meta':>9} {'raw':>9}  layer")
        for name, ops in results.items():
            for cmd, g, layer in ops:
                print(
                    f"  {name:<10} {cmd:<18} {kib(g.data)} {kib(g.metadata)} {kib(g.raw)}"
                    f"  {layer or ''}"
                )
        medians: dict[str, dict[str, float]] = {}
        for name, ops in results.items():
            medians[name] = {
                "data": statistics.median(g.data for _, g, _ in ops),
                "metadata": statistics.median(g.metadata for _, g, _ in ops),
                "logical": statistics.median(g.logical for _, g, _ in ops),
                "raw": statistics.median(g.raw for _, g, _ in ops),
                "mean_raw": statistics.mean(g.raw for _, g, _ in ops),
            }
            m = medians[name]
            print(
                f"  {name:<10} median: data {kib(m['data'])} meta {kib(m['metadata'])} "
                f"logical {kib(m['logical'])} raw {kib(m['raw'])} (mean raw {kib(m['mean_raw'])})"
            )
        # Where the bytes go: what each layer holds that its parent does not.
        layers_dir = ash.path / ".ash/layers"
        listed = {int(x["id"]): x for x in json.loads(ash.ashctl("list", "--json").stdout)}
        print("paths each measured layer changed against its parent (allocated KiB by folder):")
        per_folder: Counter[str] = Counter()
        per_path: Counter[str] = Counter()
        for _, _, layer in results["ashlayers"]:
            parent = listed[layer]["parent"]
            sizes = changed_files(layers_dir / str(parent), layers_dir / str(layer))
            folders: Counter[str] = Counter()
            for rel, size in sizes.items():
                folders[folder_of(rel)] += size
            per_folder.update(folders)
            per_path.update(sizes)
            top3 = ", ".join(f"{f} {kib(s).strip()}" for f, s in folders.most_common(6))
            print(f"  layer {layer:>3} ({len(sizes)} paths): {top3}")
        n = len(results["ashlayers"])
        print(
            "  mean per layer: "
            + ", ".join(f"{f} {kib(s / n).strip()}" for f, s in per_folder.most_common(8))
        )
        print(
            "  largest paths, mean per layer: "
            + ", ".join(f"{p} {kib(s / n).strip()}" for p, s in per_path.most_common(8))
        )
        print("exclusive data of each measured layer's snapshot now (btrfs filesystem du), KiB:")
        excl = [exclusive(layers_dir / str(layer))[1] for _, _, layer in results["ashlayers"]]
        print("  " + " ".join(kib(e).strip() for e in excl))
        if updates:
            print("with `apt-get update` (a changed list) before each operation, KiB:")
            for cmd, g, layer in updates:
                sizes = changed_files(
                    layers_dir / str(listed_parent(ash, layer)), layers_dir / str(layer)
                )
                lists = sum(v for k, v in sizes.items() if k.startswith("var/lib/apt/lists/"))
                print(
                    f"  {cmd:<18} data {kib(g.data)} meta {kib(g.metadata)} raw {kib(g.raw)}"
                    f"  layer {layer}: /var/lib/apt/lists {kib(lists).strip()} in it"
                )
        added = medians["ashlayers"]["raw"] - own
        base = medians.get("without", {}).get("raw", 0.0)
        verdict = (
            f"median raw growth per apt operation {added / 1024:.1f} KiB beyond the package's "
            f"{own} bytes (logical {(medians['ashlayers']['logical'] - own) / 1024:.1f} KiB; "
            f"without hooks {base / 1024:.1f} KiB); bar 1024 KiB"
        )
        print(("PASS: " if added <= BAR else "MISS: ") + verdict)
        return 0
    finally:
        for root in roots:
            root.close()
        rig.close()


if __name__ == "__main__":
    sys.exit(main())
