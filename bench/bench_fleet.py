"""Benchmark: a line of layers through a real OCI registry against a plain send | receive.

Run as root from the project: `.venv/bin/python bench/bench_fleet.py [--runs 3] [--mib 80]`.
Everything lives on btrfs loop images below a temporary folder (one image per machine, as
the btrfs tier makes them) and in a mount namespace of its own; the registry is Debian's
`docker-registry` with TLS and htpasswd in network namespaces (tests/registry.py), the
sender in one and every receiver in another.

The line: a base whose root holds --mib MiB of files (half random, half text-like), then
three layers made by `ashctl run` (a 4 MiB file added, a 2 MiB file changed in place, a
folder of 50 small files), so the base travels as a full stream and the three as
incremental ones.

(a) `ashctl push` of the line to a fresh registry, then `ashctl pull --base` into a fresh
    store (each on its own file system), wall clock of both commands together;
(b) `btrfs send [-p PARENT] LAYER | btrfs receive DIR` of the same four layers into a
    fresh file system on the same machine, wall clock of the four pipelines.
    Both are warm (the layers are read once before), the runs alternate, and the ratio
    a / b is the median over --runs (aim: at most 1.3).
(c) One more layer, one file of --file-kib KiB: a second push; the bytes it uploaded (every
    blob the registry did not have before, the manifest included, from the registry's own
    storage) against that layer's `btrfs send -p` stream (aim: at most stream + 64 KiB).
(d) Eight receivers (file systems of their own) pull --base the line at once, against one
    alone: the ratio of their wall clocks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from tests.btrfs.conftest import Image, destroy_image, make_image  # noqa: E402
from tests.registry import Registry, running_registry  # noqa: E402

RATIO_AIM = 1.3
SLACK = 64 * 1024
RECEIVERS = 8
IMAGE_SIZE = "3G"
ENV = {**os.environ, "REGISTRY_AUTH_FILE": "/nonexistent"}


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def ashctl(image: Image, *args: str) -> str:
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(image.root), *args]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=TOP)
    if done.returncode != 0:
        raise SystemExit(f"bench_fleet: ashctl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def fleet(reg: Registry, ns: str, image: Image, *args: str) -> str:
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(image.root), *args]
    argv += ["--cert-dir", str(reg.cert_dir), "--authfile", str(reg.auth_file)]
    done = reg.run(ns, argv, env=ENV, cwd=TOP, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"bench_fleet: ashctl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


class Machines:
    """Fresh loop images below `folder`, each destroyed by close()."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0
        self.made: list[Image] = []

    def new(self, setup: bool = True) -> Image:
        self.count += 1
        place = self.folder / f"m{self.count}"
        place.mkdir()
        image = make_image(place, IMAGE_SIZE)
        self.made.append(image)
        if setup:
            ashctl(image, "setup")
        return image

    def drop(self, image: Image) -> None:
        destroy_image(image)
        self.made.remove(image)

    def close(self) -> None:
        for image in list(self.made):
            self.drop(image)


def fill_base(root: Path, mib: int) -> None:
    """mib MiB below root/opt/data: half random, half text-like, in 1 MiB files."""
    data = root / "opt/data"
    data.mkdir(parents=True)
    words = b" ".join(b"word%d" % (i % 5000) for i in range(200_000))
    for n in range(mib):
        payload = os.urandom(1 << 20) if n % 2 else (words * 2)[: 1 << 20]
        (data / f"f{n:04d}").write_bytes(payload)


def run_layer(image: Image, name: str, script: str) -> None:
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(image.root), "run"]
    argv += ["--name", name, "--", "sh", "-euc", script]
    subprocess.run(
        argv, check=True, capture_output=True, cwd=TOP, env={**ENV, "R": str(image.root)}
    )


def layer_paths(image: Image) -> list[Path]:
    import json

    line = json.loads(ashctl(image, "list", "--json"))
    return [image.root / ".ash/layers" / str(x["id"]) for x in line]


def plain_send_receive(layers: list[Path], into: Path) -> float:
    into.mkdir()

    def pipelines() -> None:
        parent = None
        for layer in layers:
            send = ["btrfs", "send", "-q", *(["-p", str(parent)] if parent else []), str(layer)]
            sender = subprocess.Popen(send, stdout=subprocess.PIPE)
            subprocess.run(["btrfs", "receive", "-q", str(into)], stdin=sender.stdout, check=True)
            assert sender.stdout is not None
            sender.stdout.close()
            if sender.wait() != 0:
                raise SystemExit("bench_fleet: btrfs send failed")
            parent = layer

    return timed(pipelines)


def stream_size(layer: Path, parent: Path) -> int:
    sender = subprocess.Popen(
        ["btrfs", "send", "-q", "-p", str(parent), str(layer)], stdout=subprocess.PIPE
    )
    assert sender.stdout is not None
    size = 0
    while chunk := sender.stdout.read(1 << 20):
        size += len(chunk)
    sender.wait()
    return size


def blobs(reg: Registry) -> dict[str, int]:
    folder = reg.storage / "docker/registry/v2/blobs"
    return {str(p): p.stat().st_size for p in folder.rglob("data")} if folder.exists() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=80, help="the base's files, MiB")
    parser.add_argument("--file-kib", type=int, default=256, help="(c)'s one file, KiB")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_fleet: needs root (loop images, network namespaces)", file=sys.stderr)
        return 2
    from tests.e2e.mounts import enter_private_namespace

    enter_private_namespace()
    with tempfile.TemporaryDirectory(prefix="bench-fleet.", dir="/var/tmp") as tmp:
        machines = Machines(Path(tmp))
        try:
            return bench(machines, Path(tmp), args)
        finally:
            machines.close()


def bench(machines: Machines, tmp: Path, args: argparse.Namespace) -> int:
    sender = machines.new(setup=False)
    fill_base(sender.root, args.mib)
    ashctl(sender, "setup")
    run_layer(sender, "add", 'head -c 4M /dev/urandom > "$R/opt/data/added"')
    run_layer(
        sender,
        "change",
        'dd if=/dev/urandom of="$R/opt/data/f0001" bs=1M count=2 conv=notrunc status=none',
    )
    run_layer(
        sender,
        "small files",
        'mkdir "$R/etc/app"; for i in $(seq 50); do echo "key$i = $i" > "$R/etc/app/$i.conf"; done',
    )
    line = layer_paths(sender)
    for layer in line:  # warm: both ways read the layers from the page cache
        sh("sh", "-c", f"btrfs send -q {layer} > /dev/null")
    print(
        f"a line of {len(line)} layers: a base of {args.mib} MiB of files (half random), then"
        " 4 MiB added, 2 MiB changed, 50 small files"
    )

    ab: list[tuple[float, float, float]] = []
    for run in range(args.runs):
        with running_registry(tmp / f"registry-{run}") as reg:
            ref = f"{reg.host}/bench/line:v1"
            receiver = machines.new()
            push = timed(partial(fleet, reg, reg.sender_ns, sender, "push", ref))
            pull = timed(partial(fleet, reg, reg.receiver_ns, receiver, "pull", ref, "--base"))
            machines.drop(receiver)
        plain_image = machines.new(setup=False)
        plain = plain_send_receive(line, plain_image.top / "received")
        machines.drop(plain_image)
        ab.append((push, pull, plain))
        # The next run's push must make every stream again: the store's stream cache says
        # which blobs a registry had, and the next registry is new (has_blob answers no).
    print(f"(a) push + pull --base through the registry vs (b) send | receive, {args.runs} runs, s")
    for push, pull, plain in ab:
        print(
            f"    push {push:6.2f} + pull {pull:6.2f} = {push + pull:6.2f}   plain {plain:6.2f}"
            f"   ratio {(push + pull) / plain:5.2f}"
        )
    ratio = statistics.median((p + q) / r for p, q, r in ab)
    print(f"    median a/b = {ratio:.2f} (aim <= {RATIO_AIM})")

    with running_registry(tmp / "registry-c") as reg:
        ref = f"{reg.host}/bench/line:v1"
        fleet(reg, reg.sender_ns, sender, "push", ref)
        before = blobs(reg)
        run_layer(
            sender,
            "one file",
            f'head -c {args.file_kib}K /dev/urandom > "$R/opt/data/one-file"',
        )
        grown = layer_paths(sender)
        stream = stream_size(grown[-1], grown[-2])
        out = fleet(reg, reg.sender_ns, sender, "push", ref)
        after = blobs(reg)
        new = sorted((size for path, size in after.items() if path not in before), reverse=True)
        moved = sum(new)
        print(
            f"(c) incremental push after a one-file layer ({args.file_kib} KiB): uploaded"
            f" {moved} bytes in {len(new)} blobs ({', '.join(str(n) for n in new)});"
            f" the layer's stream is {stream} bytes"
        )
        print(f"    push said: {out.strip()}")
        print(
            f"    uploaded - stream = {moved - stream:+d} bytes (aim <= +{SLACK});"
            f" uploaded / stream = {moved / stream:.2f}"
        )

        # (d) one pull alone, then eight at once (file systems of their own).
        alone = machines.new()
        one = timed(lambda: fleet(reg, reg.receiver_ns, alone, "pull", ref, "--base"))
        machines.drop(alone)
        receivers = [machines.new() for _ in range(RECEIVERS)]

        def pull_into(image: Image) -> float:
            return timed(lambda: fleet(reg, reg.receiver_ns, image, "pull", ref, "--base"))

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=RECEIVERS) as pool:
            each = list(pool.map(pull_into, receivers))
        wall = time.perf_counter() - start
        for image in receivers:
            machines.drop(image)
    print(
        f"(d) {RECEIVERS} concurrent pulls --base of the line: {wall:.2f} s (each"
        f" {min(each):.2f}-{max(each):.2f} s) vs one alone {one:.2f} s: ratio"
        f" {wall / one:.2f} ({os.cpu_count()} CPUs)"
    )
    verdict_a = "PASS" if ratio <= RATIO_AIM else "FAIL"
    verdict_c = "PASS" if moved <= stream + SLACK else "FAIL"
    print(f"{verdict_a}: a/b = {ratio:.2f} (aim {RATIO_AIM}); {verdict_c}: incremental push")
    return 0 if verdict_a == verdict_c == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
