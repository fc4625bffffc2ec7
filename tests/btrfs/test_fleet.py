"""Fleet on real btrfs through a real registry: a line pushed from one root (in the sender's
network namespace) arrives in another (in the receiver's) byte for byte, only what is missing
moves, and what is tampered, unsigned, unauthorized or unreachable writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.btrfs.conftest import Image, destroy_image, make_image
from tests.registry import Registry, running_registry

pytestmark = pytest.mark.btrfs
ZSTD = b"\x28\xb5\x2f\xfd"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Image, Image]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sender = make_image(tmp_path / "a")
    try:
        receiver = make_image(tmp_path / "b")
        try:
            for image in (sender, receiver):
                image.ashctl("setup", check=True)
            yield sender, receiver
        finally:
            destroy_image(receiver)
    finally:
        destroy_image(sender)


def ashctl(
    reg: Registry, ns: str, image: Image, *args: str, auth: bool = True
) -> subprocess.CompletedProcess[str]:
    options = ["--cert-dir", str(reg.cert_dir)]
    if auth:
        options += ["--authfile", str(reg.auth_file)]
    argv = [sys.executable, "-m", "ashcore.cli", "--root", str(image.root), *args, *options]
    return reg.run(ns, argv, env={**os.environ, "REGISTRY_AUTH_FILE": "/nonexistent"})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def one_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def run_layer(image: Image, name: str, script: str) -> None:
    """A layer made by `ashctl run` of a shell script whose paths are under "$R", the image's
    root (a command `ashctl run` runs sees the host's tree: every path must name the root)."""
    assert "$R/" in script
    image.ashctl(
        "run", "--name", name, "--", "sh", "-euc", script, check=True, env={"R": str(image.root)}
    )


def push(reg: Registry, sender: Image, tag: str, name: str) -> str:
    """A layer `name` (one file, /etc/<name>) on the sender, then its line pushed to `tag`;
    returns the reference."""
    ref = f"{reg.host}/lines/{tag}"
    run_layer(sender, name, f"echo {name} > $R/etc/{name}")
    ok(ashctl(reg, reg.sender_ns, sender, "push", ref))
    return ref


def layers(image: Image) -> list[dict[str, object]]:
    data = image.json("list")
    assert isinstance(data, list)
    return data


def store_leftovers(image: Image) -> list[str]:
    layers_dir = image.root / ".ash/layers"
    fleet = image.root / ".ash/fleet"
    names = [p.name for p in layers_dir.iterdir() if p.name.startswith("arriving.")]
    if fleet.exists():
        names += [p.name for p in fleet.iterdir() if p.name.startswith(("pull.", "push."))]
    return names


def test_a_line_arrives_whole_and_exact_then_only_the_new_layer_moves(
    pair: tuple[Image, Image], registry: Registry
) -> None:
    sender, receiver = pair
    ref = f"{registry.host}/lines/web:v1"
    run_layer(
        sender,
        "motd",
        "echo hello > $R/etc/motd; mkdir -p $R/opt/app;"
        " head -c 300000 /dev/urandom > $R/opt/app/blob",
    )
    run_layer(sender, "conf", "echo 'port = 80' > $R/etc/web.conf; rm $R/etc/motd")
    sender.ashctl("label", "conf", "web", check=True)  # travels with its layer
    result = ashctl(registry, registry.sender_ns, sender, "push", ref)
    assert "uploaded" in ok(result) and "no recipe" not in result.stderr, result.stderr

    # The receiver lacks the base: it is told its two ways, and nothing is written.
    refused = one_line(ashctl(registry, registry.receiver_ns, receiver, "pull", ref), code=2)
    assert "--base" in refused and "--replay" in refused
    before = layers(receiver)
    assert store_leftovers(receiver) == []

    out = ok(ashctl(registry, registry.receiver_ns, receiver, "pull", ref, "--base"))
    after = layers(receiver)
    new = after[len(before) :]
    assert [la["name"] for la in new][-2:] == ["motd", "conf"]
    assert "3 layers received" in out
    tip = new[-1]
    snapshot = receiver.root / ".ash/layers" / str(tip["id"])
    assert (snapshot / "etc/web.conf").read_text() == "port = 80\n"
    assert not (snapshot / "etc/motd").exists()
    sent = sender.root / ".ash/layers" / str(layers(sender)[-1]["id"])
    assert (snapshot / "opt/app/blob").read_bytes() == (sent / "opt/app/blob").read_bytes()
    assert [la["parent"] for la in new][1:] == [la["id"] for la in new][:-1]
    shown = receiver.json("show", str(tip["id"]))
    assert isinstance(shown, dict) and shown["command"] == layers(sender)[-1]["command"]
    assert shown["pulled"]["from"] == ref and shown["pulled"]["id"] == layers(sender)[-1]["id"]
    assert shown["labels"] == ["web"] and receiver.json("show", "web")["id"] == tip["id"]  # type: ignore[index]

    # Deploy it: the receiver's root is the sender's line.
    ok(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ashcore.cli",
                "--root",
                str(receiver.root),
                "deploy",
                str(tip["id"]),
            ],
            capture_output=True,
            text=True,
        )
    )
    assert (receiver.root / "etc/web.conf").read_text() == "port = 80\n"

    # One more small layer: the second push does not upload the base again, and the pull
    # receives only that layer.
    run_layer(sender, "small", "echo 1 > $R/etc/small")
    pushed = ok(ashctl(registry, registry.sender_ns, sender, "push", ref))
    base_blob = max(registry.storage.rglob("data"), key=lambda p: p.stat().st_size)
    uploaded = int(pushed.split(" blobs uploaded (")[0].rsplit(" ", 1)[1])
    assert uploaded <= 5, pushed  # stream, index, recipe, bundle, manifest's config at most
    size_text = pushed.split(" blobs uploaded (")[1].split(")")[0]
    amount = float(size_text.split()[0]) * (1024 if "KiB" in size_text else 2**20)
    assert amount < base_blob.stat().st_size, pushed
    out = ok(ashctl(registry, registry.receiver_ns, receiver, "pull", ref))
    assert "1 layers received" in out and "3 were here" in out
    assert layers(receiver)[-1]["name"] == "small"


def test_a_tampered_blob_a_bad_password_and_a_registry_down_write_nothing(
    pair: tuple[Image, Image], registry: Registry
) -> None:
    sender, receiver = pair
    ref = push(registry, sender, "t:v1", "data")
    before = layers(receiver)

    # A wrong password: one line, nothing written.
    bad = registry.auth_file.parent / "bad.json"
    bad.write_text(json.dumps({"auths": {registry.host: {"auth": "YXNoOndyb25n"}}}))
    argv = [
        sys.executable,
        "-m",
        "ashcore.cli",
        "--root",
        str(receiver.root),
        "pull",
        ref,
        "--base",
        "--cert-dir",
        str(registry.cert_dir),
        "--authfile",
        str(bad),
    ]
    line = one_line(registry.run(registry.receiver_ns, argv))
    assert "not authorized" in line
    # No CA given: the certificate is not trusted.
    argv = [
        sys.executable,
        "-m",
        "ashcore.cli",
        "--root",
        str(receiver.root),
        "pull",
        ref,
        "--base",
        "--authfile",
        str(registry.auth_file),
    ]
    assert "not trusted" in one_line(registry.run(registry.receiver_ns, argv))

    # A tampered stream blob (same size, one byte changed): the newest layer's (zstd frames).
    streams = [p for p in registry.storage.rglob("data") if p.read_bytes()[:4] == ZSTD]
    assert len(streams) == 2
    victim = min(streams, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    line = one_line(ashctl(registry, registry.receiver_ns, receiver, "pull", ref, "--base"))
    assert "does not match its digest" in line
    assert layers(receiver) == before and store_leftovers(receiver) == []

    registry.stop()
    line = one_line(ashctl(registry, registry.receiver_ns, receiver, "pull", ref, "--base"))
    assert "cannot reach the registry" in line
    assert layers(receiver) == before and store_leftovers(receiver) == []


def _gpg(home: Path, *args: str) -> str:
    home.mkdir(mode=0o700, exist_ok=True)
    result = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _key(home: Path, who: str) -> Path:
    _gpg(home, "--quick-gen-key", f"{who} <{who}@example.org>", "ed25519", "sign", "never")
    exported = home / f"{who}.asc"
    exported.write_text(_gpg(home, "--armor", "--export", who))
    return exported


def test_a_store_that_trusts_a_key_takes_only_lines_it_signed(
    pair: tuple[Image, Image], registry: Registry, tmp_path: Path
) -> None:
    sender, receiver = pair
    good_home, other_home = tmp_path / "gpg-good", tmp_path / "gpg-other"
    good, other = _key(good_home, "builder"), _key(other_home, "stranger")
    run_layer(sender, "signed", "echo s > $R/etc/s")
    env_sign = {**os.environ, "GNUPGHOME": str(good_home)}
    argv = [
        sys.executable,
        "-m",
        "ashcore.cli",
        "--root",
        str(sender.root),
        "push",
        f"{registry.host}/lines/s:v1",
        "--sign",
        "builder",
        "--cert-dir",
        str(registry.cert_dir),
        "--authfile",
        str(registry.auth_file),
    ]
    assert registry.run(registry.sender_ns, argv, env=env_sign).returncode == 0
    ok(ashctl(registry, registry.sender_ns, sender, "push", f"{registry.host}/lines/u:v1"))
    before = layers(receiver)

    unsigned = ashctl(
        registry,
        registry.receiver_ns,
        receiver,
        "pull",
        f"{registry.host}/lines/u:v1",
        "--base",
        "--trusted-key",
        str(good),
    )
    assert "not signed" in one_line(unsigned)
    wrong = ashctl(
        registry,
        registry.receiver_ns,
        receiver,
        "pull",
        f"{registry.host}/lines/s:v1",
        "--base",
        "--trusted-key",
        str(other),
    )
    assert "not trusted" in one_line(wrong)
    assert layers(receiver) == before

    out = ashctl(
        registry,
        registry.receiver_ns,
        receiver,
        "pull",
        f"{registry.host}/lines/s:v1",
        "--base",
        "--trusted-key",
        str(good),
    )
    ok(out)
    assert "signed by key" in out.stderr
    assert layers(receiver)[-1]["name"] == "signed"


def test_what_a_killed_pull_left_is_found_by_doctor_and_finished_or_cleared(
    pair: tuple[Image, Image], registry: Registry
) -> None:
    sender, receiver = pair
    ref = push(registry, sender, "k:v1", "one")
    ok(ashctl(registry, registry.receiver_ns, receiver, "pull", ref, "--base"))
    store = receiver.root / ".ash"
    tip = layers(receiver)[-1]
    # A pull killed after it renamed its stream into place and wrote the manifest, before the
    # record: the record is all that is missing. And one killed mid-receive: a subvolume
    # `arriving.<pid>.0` of a process that is gone.
    dead = 2**22 + 12345  # above pid_max's default: no such process
    receiver.ashctl("doctor", check=True)
    subprocess.run(
        ["btrfs", "subvolume", "snapshot", "-r", str(store / "layers" / str(tip["id"])),
         str(store / "layers" / f"arriving.{dead}.0")],
        check=True, capture_output=True,
    )  # fmt: skip
    (store / "fleet" / f"pull.{dead}-1.json").write_text(json.dumps({"id": 99, "arriving": None}))
    manifest = json.loads((store / "layers" / f"{tip['id']}.json").read_text())
    (store / "layers" / "99.json").write_text(json.dumps(manifest | {"id": 99, "name": "lost"}))
    subprocess.run(
        ["btrfs", "subvolume", "snapshot", "-r", str(store / "layers" / str(tip["id"])),
         str(store / "layers" / "99")],
        check=True, capture_output=True,
    )  # fmt: skip
    found = receiver.ashctl("doctor")
    assert found.returncode != 0 and "pull was cut short" in found.stdout + found.stderr
    assert f"arriving.{dead}.0" in found.stdout + found.stderr
    receiver.ashctl("doctor", "--repair", check=True)
    assert store_leftovers(receiver) == []
    assert not (store / "layers" / f"arriving.{dead}.0").exists()
    assert [la["name"] for la in layers(receiver) if la["id"] == 99] == ["lost"]
    receiver.ashctl("doctor", check=True)


def _claim(path: Path, identity: str, owner: int) -> None:
    """Make `path` a read-only subvolume owned by `owner` that claims to be received as
    `identity` (what any user may do to a subvolume of their own)."""
    import fcntl
    import struct
    import uuid

    import btrfsutil

    btrfsutil.create_subvolume(str(path))
    (path / "planted").write_text("not the sender's\n")
    os.chown(path, owner, owner)
    args = uuid.UUID(identity).bytes + struct.pack("<QQ", 1, 1) + bytes(200 - 32)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, 0xC0C89425, bytearray(args))  # BTRFS_IOC_SET_RECEIVED_SUBVOL
    finally:
        os.close(fd)
    btrfsutil.set_subvolume_read_only(str(path), True)


def test_a_stream_is_built_on_this_stores_layer_whatever_else_claims_its_uuid(
    pair: tuple[Image, Image], registry: Registry, tmp_path: Path
) -> None:
    """`btrfs receive` takes a stream's parent from the first subvolume of the filesystem that
    claims its uuid. Here two claim the base's before it arrives: a user's subvolume (a
    line's uuids are public) and another root's copy that the store's mount cannot reach (it
    made "parent subvol is not reachable" of a second root's pull). The layer is built on the
    store's own base, and on nothing else."""
    import btrfsutil

    sender, receiver = pair
    ref = push(registry, sender, "c:v1", "one")
    base = sender.root / ".ash/layers/1"
    identity = btrfsutil.subvolume_info(str(base)).uuid.hex()
    (receiver.top / "home").mkdir()
    _claim(receiver.top / "home/trap", identity, 1000)
    (receiver.top / "other-root").mkdir()
    stream = tmp_path / "base.stream"
    with open(stream, "wb") as out:
        subprocess.run(["btrfs", "send", "-q", str(base)], stdout=out, check=True)
    subprocess.run(
        ["btrfs", "receive", "-q", "-f", str(stream), str(receiver.top / "other-root")],
        check=True, capture_output=True,
    )  # fmt: skip

    out = ok(ashctl(registry, registry.receiver_ns, receiver, "pull", ref, "--base"))
    assert "2 layers received" in out
    here = layers(receiver)
    new = receiver.root / f".ash/layers/{here[-1]['id']}"
    ours = btrfsutil.subvolume_info(str(receiver.root / f".ash/layers/{here[-2]['id']}"))
    assert btrfsutil.subvolume_info(str(new)).parent_uuid == ours.uuid
    assert (new / "etc/one").read_text() == "one\n" and not (new / "planted").exists()


def _pull_killed_at(
    reg: Registry, receiver: Image, limit: int, ref: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tests.btrfs.crashrun", str(limit), "--root",
            str(receiver.root), "pull", ref, "--base", "--cert-dir", str(reg.cert_dir),
            "--authfile", str(reg.auth_file)]  # fmt: skip
    env = {**os.environ, "ASH_CRASH_ONLY": "fleet/pull,fleet/arrival,store,storedb,manifests"}
    return reg.run(reg.receiver_ns, argv, env=env, cwd=Path(__file__).parents[2])


def test_a_pull_killed_at_any_line_leaves_no_half_layer(
    pair: tuple[Image, Image], registry: Registry
) -> None:
    """SIGKILL at about 30 points spread over the traced lines of a pull (its receive and the
    journaled steps that make the arrived streams layers): after `doctor --repair` each
    layer of the line is here whole (snapshot, record, manifest) or not at all, nothing is
    left in the store's work places, and the next pull finishes the line."""
    sender, receiver = pair
    run_layer(sender, "a", "echo a > $R/etc/a")
    ref = push(registry, sender, "kill:v1", "b")
    sent = [la["name"] for la in layers(sender)]
    counted = _pull_killed_at(registry, receiver, 0, ref)
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.rsplit("LINES ", 1)[1].split()[0])
    assert total > 50
    base_layers = 1  # the receiver's own base
    killed = 0
    for limit in range(1, total + 1, max(1, total // 30)):
        # A fresh store each round would cost a loop image; instead the pulled layers go.
        for la in reversed(layers(receiver)[base_layers:]):  # leaves first
            receiver.ashctl("remove", str(la["id"]), check=True)
        assert len(layers(receiver)) == base_layers, layers(receiver)
        result = _pull_killed_at(registry, receiver, limit, ref)
        assert result.returncode in (0, -9, 137), (limit, result.stderr)
        killed += result.returncode != 0
        receiver.ashctl("doctor", "--repair", check=True)
        assert store_leftovers(receiver) == [], limit
        store = receiver.root / ".ash/layers"
        for la in layers(receiver)[base_layers:]:
            if la["status"] != "pruned":
                assert (store / str(la["id"])).is_dir(), (limit, la)
                assert (store / f"{la['id']}.json").is_file(), (limit, la)
        names = [la["name"] for la in layers(receiver)[base_layers:]]
        assert names == sent[: len(names)], (limit, names)
        ok(ashctl(registry, registry.receiver_ns, receiver, "pull", ref, "--base"))
        assert [la["name"] for la in layers(receiver)[base_layers:]] == sent, limit
    assert killed >= 25


def test_apply_ref_runs_the_recipe_a_pushed_line_carries(
    pair: tuple[Image, Image], registry: Registry
) -> None:
    sender, receiver = pair
    ref = push(registry, sender, "recipe:v1", "motd")
    out = ok(ashctl(registry, registry.receiver_ns, receiver, "apply", ref))
    assert f"applied {ref}" in out
    assert (receiver.root / "etc/motd").read_text() == "motd\n"
    # No layer arrived as such: the recipe ran on the receiver's own deployment.
    assert all(la["name"] != "motd" for la in layers(receiver))
    refused = ashctl(registry, registry.receiver_ns, receiver, "apply", ref, "--dry-run")
    assert "--dry-run and --from work on a recipe file" in one_line(refused, code=2)
