"""`ashctl push [LAYER] REF`: the line from the base to LAYER, as one artifact in a registry.

Each layer with a snapshot travels as a `btrfs send` stream against its nearest ancestor that
has one (the base in full), compressed with zstd; each stream's digest is remembered in the
store (`fleet/streams.json`, keyed by the two layers' identities) so that a second push asks
the registry whether it has the blob before making the stream again: only what the registry
lacks is made and uploaded. The line's recipe (`ashctl export`) travels beside the streams,
for receivers that replay rather than receive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ashcore.errors import AshError, BackendError, UsageError
from ashcore.fleet import artifact
from ashcore.fleet.arrival import fleet_dir
from ashcore.fleet.artifact import Blob, Line, LineLayer, Stream
from ashcore.fleet.oci import Client, progress_line
from ashcore.fleet.reference import Reference
from ashcore.model import Layer, Status
from ashcore.ondisk import read_json, write_json
from ashcore.sets import READ_IN_ROOT
from ashcore.target import Target
from ashcore.text import escaped

CHUNK = 1 << 20
TOOLS_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


@dataclass
class Moved:
    """What a push or pull moved: blobs and bytes sent or fetched, and those skipped."""

    blobs: int = 0
    bytes: int = 0
    skipped: int = 0


def line_of(target: Target, last: Layer) -> list[Layer]:
    line: list[Layer] = []
    current: int | None = last.id
    while current is not None:
        layer = target.store.get(current)
        if layer.status == Status.PENDING:
            raise UsageError(f"layer {layer.id} is still being made", hint="wait for it")
        line.insert(0, layer)
        current = layer.parent
    if not os.path.isdir(target.store.layer_path(line[0].id)):
        raise UsageError(
            f"the base, layer {line[0].id}, has no snapshot (pruned): its line cannot travel",
            hint="`ashctl export` writes its recipe, which `ashctl apply` replays",
        )
    return line


def start(argv: list[str], **pipes: Any) -> subprocess.Popen[bytes]:
    """One of the tools a stream passes through (btrfs, zstd), with a clean environment."""
    try:
        return subprocess.Popen(argv, stderr=subprocess.PIPE, env=TOOLS_ENV, **pipes)
    except FileNotFoundError as e:
        raise BackendError(
            f"the `{e.filename}` command is missing", hint="install btrfs-progs and zstd"
        ) from None


def make_stream(target: Target, layer: Layer, against: Layer | None, out: str) -> tuple[str, int]:
    """`btrfs send` of `layer` (against `against`) through zstd into `out`: (digest, size)."""
    store = target.store
    send = ["btrfs", "send", "-q"]
    if against is not None:
        send += ["-p", store.layer_path(against.id)]
    send.append(store.layer_path(layer.id))
    sha, size = hashlib.sha256(), 0
    sender = start(send, stdout=subprocess.PIPE)
    packer = start(["zstd", "-q", "-1", "-T0", "-c"], stdin=sender.stdout, stdout=subprocess.PIPE)
    assert sender.stdout is not None and packer.stdout is not None
    sender.stdout.close()
    with open(out, "wb") as f:
        while chunk := packer.stdout.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
            f.write(chunk)
    packer.wait()
    sender.wait()
    if sender.returncode or packer.returncode:
        assert sender.stderr is not None and packer.stderr is not None
        said = (sender.stderr.read() + packer.stderr.read()).decode(errors="replace").strip()
        raise BackendError(f"cannot make the stream of layer {layer.id}: {escaped(said[-200:])}")
    return f"sha256:{sha.hexdigest()}", size


def _upload(client: Client, path: str, digest: str, size: int, label: str, moved: Moved) -> None:
    """Upload the file `path` as the blob `digest`, unless the registry has it."""
    if client.has_blob(digest):
        moved.skipped += 1
    else:
        client.push_blob(path, digest, size, progress_line(label, size))
        moved.blobs, moved.bytes = moved.blobs + 1, moved.bytes + size


def _upload_file(client: Client, path: str, label: str, moved: Moved) -> Blob:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    digest = f"sha256:{sha.hexdigest()}"
    _upload(client, path, digest, size, label, moved)
    return Blob("", digest, size, os.path.basename(path))


def _upload_bytes(client: Client, data: bytes, moved: Moved) -> str:
    digest = artifact.digest_of(data)
    if client.has_blob(digest):
        moved.skipped += 1
    else:
        client.push_bytes(data, digest)
        moved.blobs, moved.bytes = moved.blobs + 1, moved.bytes + len(data)
    return digest


def push(
    target: Target,
    last: Layer,
    ref: Reference,
    client: Client,
    say: Callable[[str], None],
    *,
    sign_key: str | None = None,
) -> tuple[str, Moved]:
    """Push the line up to `last` to `ref`; returns the manifest's digest and what moved."""
    from ashcore.fleet.signing import sign

    layers = line_of(target, last)
    client.ping()
    store, fs = target.store, target.fs
    cache_path = os.path.join(fleet_dir(target), "streams.json")
    cache = read_json(cache_path)
    cache = cache if isinstance(cache, dict) else {}
    moved = Moved()
    work = tempfile.mkdtemp(prefix=f"push.{os.getpid()}.", dir=fleet_dir(target))
    try:
        records: list[LineLayer] = []
        labels = store.labels()
        previous: Layer | None = None  # the nearest ancestor with a snapshot
        identities: dict[int, str] = {}
        for layer in layers:
            stream = None
            identity = None
            if os.path.isdir(store.layer_path(layer.id)):
                identity = fs.info(store.layer_path(layer.id)).identity
                identities[layer.id] = identity
                against = identities[previous.id] if previous is not None else None
                key = f"{identity}:{against or '-'}"
                known = cache.get(key)
                if isinstance(known, dict) and client.has_blob(str(known.get("digest"))):
                    stream = Stream(str(known["digest"]), int(known["size"]), against)
                    moved.skipped += 1
                else:
                    out = os.path.join(work, f"{layer.id}.stream")
                    say(f"making the stream of layer {layer.id} ({escaped(layer.name)})")
                    digest, size = make_stream(target, layer, previous, out)
                    _upload(client, out, digest, size, f"layer {layer.id}", moved)
                    os.unlink(out)
                    stream = Stream(digest, size, against)
                    cache[key] = {"digest": digest, "size": size}
                    write_json(cache_path, cache)
                previous = layer
            manifest = read_json(store.manifest_path(layer.id))
            manifest = manifest if isinstance(manifest, dict) else {}
            sets = manifest.get("sets") if isinstance(manifest.get("sets"), dict) else None
            records.append(
                LineLayer(
                    id=layer.id,
                    parent=layer.parent,
                    name=layer.name,
                    manager=layer.manager,
                    origin=_origin(manifest),
                    command=layer.command,
                    status=layer.status.value,
                    created=layer.created,
                    finished=layer.finished,
                    packages=layer.packages.to_json(),
                    sets=sets,
                    identity=identity,
                    stream=stream,
                    sets_read_in_root=sets is not None and manifest.get(READ_IN_ROOT) is True,
                    labels=tuple(labels.get(layer.id, ())),
                )
            )
        recipe, bundles = _recipe(target, last, work, client, moved, say)
        line = Line(tuple(records), recipe, bundles)
        index = artifact.index_bytes(line)
        index_blob = Blob(
            artifact.LINE, _upload_bytes(client, index, moved), len(index), "line.json"
        )
        _upload_bytes(client, artifact.EMPTY_DATA, moved)
        annotations = {
            "org.opencontainers.image.title": f"ashlayers line to layer {last.id}",
            "io.ashlayers.tip": escaped(last.name)[:200],
            "org.opencontainers.image.created": last.finished or last.created,
        }
        data = artifact.manifest_bytes(index_blob, line, annotations)
        digest = client.push_manifest(ref.tag or "latest", data)
        moved.bytes += len(data)
        if sign_key is not None:
            sign(client, digest, sign_key, work)
            say(f"signed {digest[:19]} with key {sign_key}")
        return digest, moved
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _origin(manifest: dict[str, object]) -> str | None:
    origin = manifest.get("plugin")
    return origin if isinstance(origin, str) else None


def _recipe(
    target: Target, last: Layer, work: str, client: Client, moved: Moved, say: Callable[[str], None]
) -> tuple[Blob | None, tuple[Blob, ...]]:
    """The line's recipe and bundles, uploaded; none (said) when the line has none."""
    from ashcore.export import export

    if last.parent is None:
        return None, ()
    folder = os.path.join(work, "recipe")
    os.mkdir(folder, 0o700)
    try:
        files = export(target, last, os.path.join(folder, "recipe.toml"))
    except AshError as e:
        say(f"no recipe travels with this line ({e.args[0]}): receivers can take it only whole")
        return None, ()
    blobs = [_upload_file(client, path, os.path.basename(path), moved) for path in files]
    recipe = Blob(artifact.RECIPE, blobs[0].digest, blobs[0].size, "recipe.toml")
    bundles = tuple(Blob(artifact.BUNDLE, b.digest, b.size, b.title) for b in blobs[1:])
    return recipe, bundles
