"""Fleet with the real managers through a real registry: a line made by apt, dnf5, pacman and
a hand edit in one rig root is pushed from the sender's network namespace and pulled in the
receiver's into fresh rig roots: exactly (`--base`, then deploy and roll back), by replay
(`--replay`, the receiver's own managers), and by eight receivers at once (each on a
file system of its own, as machines are: see `machines`).

`ashctl` runs from the host with `--root` (as the btrfs tier does), inside the registry's
namespaces; the package queries run chrooted in the roots."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.btrfs.conftest import Image, destroy_image, make_image
from tests.e2e.command import RigError
from tests.e2e.rig import Rig
from tests.e2e.root import Root, chroot_env
from tests.e2e.test_apt import layers
from tests.registry import Registry, running_registry

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
HAND_EDIT = "etc/ashtest-hand-edit.conf"
HAND_TEXT = b"# edited by hand\nport = 8080\n\x00binary tail\xff\n"
# What a record of a layer says that must travel unchanged (ids, parents, uuids and
# times are the receiver's own).
RECORD_KEYS = ("name", "command", "manager", "status", "packages")
RECEIVERS = 8


def host_ashctl(root: Root, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=600,
    )


def fleet(reg: Registry, ns: str, root: Root, *args: str) -> subprocess.CompletedProcess[str]:
    """`ashctl --root ROOT ARGS` from the host, in network namespace `ns`."""
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(root.path), *args]
    argv += ["--cert-dir", str(reg.cert_dir), "--authfile", str(reg.auth_file)]
    return reg.run(
        ns, argv, env={**os.environ, "REGISTRY_AUTH_FILE": "/nonexistent"}, cwd=PROJECT, timeout=600
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def queries(root: Root) -> dict[str, str]:
    """Every manager's own view of what is installed, as it prints it (sorted)."""
    dpkg = root.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\\n"]).stdout
    rpm = root.run(["rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"]).stdout
    pacman = root.run(["pacman", "-Q"], check=False).stdout  # exit 1: none installed
    return {
        "dpkg": "\n".join(sorted(dpkg.splitlines())),
        "rpm": "\n".join(sorted(rpm.splitlines())),
        "pacman": "\n".join(sorted(pacman.splitlines())),
    }


def ours(found: dict[str, str]) -> dict[str, set[str]]:
    """The test packages in a `queries` answer, by name per manager (without ashtest-binsh,
    the rig's own: it gives rpm a /bin/sh)."""
    names = {
        "dpkg": {x.split()[0] for x in found["dpkg"].splitlines()},
        "rpm": {x.rsplit("-", 2)[0] for x in found["rpm"].splitlines()},
        "pacman": {x.split()[0] for x in found["pacman"].splitlines()},
    }
    return {m: {n for n in v if n.startswith("ashtest-") and n != "ashtest-binsh"}
            for m, v in names.items()}  # fmt: skip


def line_to(root: Root, tip: int) -> list[dict[str, Any]]:
    """The records of the line from the base to layer `tip`, base first."""
    found = {x["id"]: x for x in layers(root)}
    line: list[dict[str, Any]] = []
    current: int | None = tip
    while current is not None:
        line.insert(0, found[current])
        current = found[current]["parent"]
    return line


def records(line: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: x.get(k) for k in RECORD_KEYS} for x in line]


def tip_of(pulled: str) -> int:
    """The tip's id from `pulled REF: tip is layer N (...)`."""
    return int(pulled.split("tip is layer ", 1)[1].split()[0])


@dataclass
class Pushed:
    registry: Registry
    sender: Root
    ref: str
    line: list[dict[str, Any]]  # the sender's records, base first
    queries: dict[str, str]
    push_seconds: float


@pytest.fixture
def fresh_roots(rig: Rig) -> Iterator[Callable[[int], list[Root]]]:
    """`make(n)`: n fresh roots after `ashctl setup`; all closed after the test."""
    opened: list[Root] = []

    def make(n: int) -> list[Root]:
        made = []
        for _ in range(n):
            try:
                root = rig.new_root()
            except RigError as exc:
                pytest.fail(f"the e2e rig could not give a root:\n{exc}", pytrace=False)
            opened.append(root)
            made.append(root)
        with ThreadPoolExecutor(max_workers=len(made)) as pool:
            list(pool.map(Root.setup, made))
        return made

    try:
        yield make
    finally:
        errors = []
        for root in opened:
            try:
                root.close()
            except RigError as exc:
                errors.append(f"{root.path}: {exc}")
        if errors:
            pytest.fail("the e2e rig could not clean up:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def scratch(rig: Rig) -> Iterator[Path]:
    """A folder beside the rig's image (not /tmp, which may be a tmpfs): the registry's
    storage and the receivers' images, gigabytes, go there; removed after the module."""
    folder = rig.paths.dir / f"fleet-{os.getpid()}"
    remove = ["rm", "-rf", "--one-file-system", "--", str(folder)]  # never into a mount
    subprocess.run(remove, check=True)
    folder.mkdir()
    try:
        yield folder
    finally:
        subprocess.run(remove, check=False)


@pytest.fixture(scope="module")
def pushed(rig: Rig, scratch: Path) -> Iterator[Pushed]:
    """A line made in a rig root by apt, a hand edit, dnf5 and pacman, pushed to a registry
    (module-wide: the tests below receive the same line)."""
    with running_registry(scratch / "registry") as reg:
        sender = rig.new_root()
        try:
            sender.setup()
            sender.run(["apt-get", "install", "-y", "ashtest-b"])
            (sender.path / HAND_EDIT).write_bytes(HAND_TEXT)  # kept by the next operation
            sender.run(["dnf5", "install", "-y", "ashtest-v"])
            # pacman's ashtest-a ships the file apt's does: --overwrite, as a user would.
            sender.run(["pacman", "-S", "--noconfirm", "--overwrite", "*", "ashtest-a"])
            status = sender.ashctl_json("status")
            assert status["drift"] is False, status
            line = line_to(sender, status["layer"])
            ref = f"{reg.host}/fleet/line:v1"
            started = time.monotonic()
            result = fleet(reg, reg.sender_ns, sender, "push", ref)
            seconds = time.monotonic() - started
            out = ok(result)
            assert f"pushed the line to layer {status['layer']}" in out, out
            assert "no recipe" not in result.stderr, result.stderr  # replay needs it
            yield Pushed(reg, sender, ref, line, queries(sender), seconds)
        finally:
            sender.close()


def test_the_line_shape(pushed: Pushed) -> None:
    """The sender's line is what the other tests expect to travel: base, apt, the hand
    edit's drift layer, dnf5, pacman."""
    commands = [x["command"] for x in pushed.line[1:]]
    kinds = [x["status"] for x in pushed.line[1:]]
    assert len(pushed.line) == 5, pushed.line
    assert "drift" in kinds, pushed.line
    assert any("apt-get install" in str(c) for c in commands), commands
    assert any("dnf5 install" in str(c) for c in commands), commands
    assert any("pacman -S" in str(c) for c in commands), commands
    assert ours(pushed.queries) == {
        "dpkg": {"ashtest-a", "ashtest-b"},
        "rpm": {"ashtest-v"},
        "pacman": {"ashtest-a"},
    }, pushed.queries


def test_exact_arrival_then_deploy_and_roll_back(
    pushed: Pushed, fresh_roots: Callable[[int], list[Root]]
) -> None:
    reg = pushed.registry
    (receiver,) = fresh_roots(1)
    before = {x["id"] for x in layers(receiver)}
    out = ok(fleet(reg, reg.receiver_ns, receiver, "pull", pushed.ref, "--base"))
    assert f"{len(pushed.line)} layers received" in out, out
    tip = tip_of(out)
    line = line_to(receiver, tip)
    assert all(x["id"] not in before for x in line), line  # the whole line arrived, anew
    assert records(line) == records(pushed.line)

    ok(host_ashctl(receiver, "deploy", str(tip)))
    assert receiver.ashctl_json("status")["layer"] == tip
    assert queries(receiver) == pushed.queries
    assert (receiver.path / HAND_EDIT).read_bytes() == HAND_TEXT
    sent = (pushed.sender.path / HAND_EDIT).stat()
    got = (receiver.path / HAND_EDIT).stat()
    assert (got.st_mode, got.st_uid, got.st_gid) == (sent.st_mode, sent.st_uid, sent.st_gid)

    # Back to the layer before the tip (dnf5's): pacman's ashtest-a is gone, the rest stays.
    ok(host_ashctl(receiver, "rollback"))
    status = receiver.ashctl_json("status")
    assert status["layer"] == line[-2]["id"], (status, line)
    now = ours(queries(receiver))
    assert now == {"dpkg": {"ashtest-a", "ashtest-b"}, "rpm": {"ashtest-v"}, "pacman": set()}
    assert (receiver.path / HAND_EDIT).read_bytes() == HAND_TEXT
    assert receiver.ashctl("doctor").returncode == 0


def test_replay_makes_the_line_with_the_receivers_own_managers(
    pushed: Pushed, fresh_roots: Callable[[int], list[Root]]
) -> None:
    reg = pushed.registry
    (receiver,) = fresh_roots(1)
    start = ours(queries(receiver))
    before = {x["id"] for x in layers(receiver)}
    refused = fleet(reg, reg.receiver_ns, receiver, "pull", pushed.ref)
    assert refused.returncode == 2 and "--replay" in refused.stderr, refused.stderr
    out = ok(fleet(reg, reg.receiver_ns, receiver, "pull", pushed.ref, "--replay"))
    assert "replayed" in out and "is its tip" in out, out
    now = ours(queries(receiver))
    assert {m: now[m] - start[m] for m in now} == {
        "dpkg": {"ashtest-a", "ashtest-b"},
        "rpm": {"ashtest-v"},
        "pacman": {"ashtest-a"},
    }, now
    assert (receiver.path / HAND_EDIT).read_bytes() == HAND_TEXT
    made = [x for x in layers(receiver) if x["id"] not in before]
    commands = [str(x["command"]) for x in made]
    for wanted in ("apt-get install -y ashtest-b", "dnf5 install -y ashtest-v", "pacman -S"):
        assert any(wanted in c for c in commands), commands
    # Named as the sender's were (after their commands), made by this root's managers.
    sent = {x["name"] for x in pushed.line if x["manager"]}
    assert sent <= {x["name"] for x in made if x["manager"]}, (sent, made)
    status = receiver.ashctl_json("status")
    assert status["layer"] == made[-1]["id"] and status["drift"] is False, (status, made)
    # Made here: none of them is a received snapshot.
    assert all(x["status"] in ("committed", "drift") for x in made), made


def chroot_queries(root: Path) -> dict[str, str]:
    """`queries` in a root that is no rig root (no API mounts: these need none)."""

    def run(argv: list[str], check: bool = True) -> str:
        result = subprocess.run(
            ["chroot", str(root), *argv],
            env=chroot_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 or not check, (argv, result.stderr)
        return result.stdout

    dpkg = run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\\n"])
    rpm = run(["rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n"])
    pacman = run(["pacman", "-Q"], check=False)
    return {
        "dpkg": "\n".join(sorted(dpkg.splitlines())),
        "rpm": "\n".join(sorted(rpm.splitlines())),
        "pacman": "\n".join(sorted(pacman.splitlines())),
    }


@pytest.fixture
def machines(scratch: Path) -> Iterator[list[Image]]:
    """RECEIVERS empty roots, each on a btrfs file system of its own (as machines are),
    after `ashctl setup`.

    Not rig roots: those share one file system, and `btrfs receive` finds the layer a stream
    is sent against by its received uuid in the whole file system, taking the first it finds;
    with the line's base received into two stores of one file system, the next layer of the
    second finds the first's ("parent subvol is not reachable from inside the root subvol")."""
    made: list[Image] = []
    try:
        for n in range(RECEIVERS):
            (scratch / f"machine-{n}").mkdir()
            made.append(make_image(scratch / f"machine-{n}", "4G"))
        with ThreadPoolExecutor(max_workers=RECEIVERS) as pool:
            for result in pool.map(lambda image: image.ashctl("setup"), made):
                ok(result)
        yield made
    finally:
        for image in made:
            destroy_image(image)


def test_eight_receivers_pull_the_same_line_at_once(pushed: Pushed, machines: list[Image]) -> None:
    reg = pushed.registry

    def pull(image: Image) -> tuple[float, subprocess.CompletedProcess[str]]:
        began = time.monotonic()
        argv = [sys.executable, "-m", "ashcore.cli", "--root", str(image.root), "pull"]
        argv += [pushed.ref, "--base", "--deploy", "--cert-dir", str(reg.cert_dir)]
        argv += ["--authfile", str(reg.auth_file)]
        result = reg.run(reg.receiver_ns, argv, cwd=PROJECT, timeout=600)
        return time.monotonic() - began, result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=RECEIVERS) as pool:
        results = list(pool.map(pull, machines))
    wall = time.monotonic() - started
    for _, result in results:
        out = ok(result)
        assert f"{len(pushed.line)} layers received" in out and "deployed layer" in out, out
    for image, (_, result) in zip(machines, results, strict=True):
        found = image.json("list")
        assert isinstance(found, list)
        tip = tip_of(result.stdout)
        by_id = {x["id"]: x for x in found}
        line: list[dict[str, Any]] = []
        current: int | None = tip
        while current is not None:
            line.insert(0, by_id[current])
            current = by_id[current]["parent"]
        assert records(line) == records(pushed.line)
        assert chroot_queries(image.root) == pushed.queries
        assert (image.root / HAND_EDIT).read_bytes() == HAND_TEXT
    seconds = sorted(s for s, _ in results)
    print(
        f"\n{RECEIVERS} concurrent pulls (--base --deploy) in {wall:.1f} s, each"
        f" {seconds[0]:.1f}-{seconds[-1]:.1f} s; the push took {pushed.push_seconds:.1f} s"
    )


def blob_sizes(reg: Registry) -> dict[Path, int]:
    return {p: p.stat().st_size for p in reg.storage.rglob("data")}


def test_a_second_push_after_one_package_moves_its_stream_and_little_more(pushed: Pushed) -> None:
    """After one more package (apt-get install ashtest-v), a push of the line to another tag
    uploads that layer's stream, the index, the recipe and the manifest: at most the layer's
    `btrfs send` stream and 64 KiB (run last: it adds a layer to the sender)."""
    reg, sender = pushed.registry, pushed.sender
    before = blob_sizes(reg)
    sender.run(["apt-get", "install", "-y", "ashtest-v"])
    status = sender.ashctl_json("status")
    assert status["drift"] is False, status
    layer = next(x for x in layers(sender) if x["id"] == status["layer"])
    assert layer["name"] == "apt-get install ashtest-v", layer
    path = sender.path / ".ash/layers"
    parent, made = path / str(layer["parent"]), path / str(layer["id"])
    send = subprocess.run(
        ["btrfs", "send", "-q", "-p", str(parent), str(made)], capture_output=True, check=True
    )
    stream = len(send.stdout)
    out = ok(fleet(reg, reg.sender_ns, sender, "push", f"{reg.host}/fleet/line:v2"))
    new = {p: n for p, n in blob_sizes(reg).items() if p not in before}
    moved = sum(new.values())
    assert moved <= stream + 64 * 1024, (moved, stream, sorted(new.values()), out)
    assert len(new) <= 5, (sorted(new.values()), out)  # stream, index, recipe, manifest
    print(f"\nthe push after one package uploaded {moved} bytes; its stream is {stream} bytes")
