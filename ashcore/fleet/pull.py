"""`ashctl pull REF`: a pushed line arrives as layers with their records (no switch).

Two ways to arrive, from one artifact:
- **exact**: the streams of the layers this store lacks are received, when it has the layer
  each is sent against (by btrfs identity: a received layer keeps its sender's uuid). A
  store without the line's base takes it whole only when asked (`--base`): it is a whole
  system. The layers are byte for byte the sender's.
- **replay** (`--replay`): the line's recipe runs on this root's deployment with its own
  managers, as `ashctl apply` runs a recipe; what the deployment has already does nothing.

Nothing untrusted gets in: the manifest (against its digest when one was named, and its
signature when this store trusts keys), the index and every blob are checked before anything
is received; every stream is checked command by command on its way into `btrfs receive`,
which runs chrooted into the store's layers folder and writes a subvolume named
`arriving.<pid>.<n>`. Only when every stream of the line has arrived are they made layers,
together, under the store lock, each by a journaled step (`fleet/pull.<pid>.json`) that the
next pull or `ashctl doctor` finishes or undoes. A pull killed at any point leaves no half
layer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable

from ashcore.errors import AshError, BackendError, UsageError
from ashcore.fleet import artifact
from ashcore.fleet.arrival import ARRIVING, fleet_dir, journal_path, recover
from ashcore.fleet.artifact import Line, LineLayer
from ashcore.fleet.oci import Client, progress_line
from ashcore.fleet.push import Moved, start
from ashcore.fleet.reference import Reference
from ashcore.fleet.streamcheck import Parent, StreamError, relay
from ashcore.log import logger
from ashcore.model import Layer, Origin, PackageDelta, Status
from ashcore.ondisk import write_json
from ashcore.sets import READ_IN_ROOT
from ashcore.sizes import human
from ashcore.target import Target
from ashcore.text import escaped

log = logger(__name__)

OWN_ORIGINS = ("run", "replay", "ashctl")


def identities(target: Target) -> dict[str, int]:
    """btrfs identity -> layer id, for every layer of the store that has a snapshot."""
    store, fs = target.store, target.fs
    found: dict[str, int] = {}
    for layer in store.layers():
        path = store.layer_path(layer.id)
        if layer.status != Status.PENDING and os.path.isdir(path):
            try:
                found[fs.info(path).identity] = layer.id
            except BackendError:
                continue
    return found


def fetch_line(
    client: Client, ref: Reference, keys: tuple[str, ...]
) -> tuple[str, Line, str | None]:
    """(the manifest's digest, the line, the signer) of `ref`, every part checked."""
    from ashcore.fleet.signing import verify

    data, digest = client.fetch_manifest(ref.pinned)
    signer = verify(client, digest, keys) if keys else None
    index_blob, blobs = artifact.parse_manifest(data)
    index = client.fetch_small_blob(index_blob.digest, index_blob.size, artifact.INDEX_LIMIT)
    return digest, artifact.parse_index(index, blobs), signer


def plan(target: Target, line: Line) -> tuple[dict[int, int], list[LineLayer]]:
    """(sender id -> local id of the layers here, the layers to receive, in order)."""
    have = identities(target)
    local: dict[int, int] = {}
    missing: list[LineLayer] = []
    for layer in line.layers:
        if layer.identity is not None and layer.identity in have and not missing:
            local[layer.id] = have[layer.identity]
        else:
            missing.append(layer)
    return local, missing


def pull(
    target: Target,
    ref: Reference,
    client: Client,
    say: Callable[[str], None],
    *,
    keys: tuple[str, ...] = (),
    base: bool = False,
    replay: bool = False,
) -> tuple[Layer | None, Moved]:
    """Pull `ref` into the store; returns the line's tip here (None after a replay that made
    no layer) and what moved."""
    with target.store.locked(target.config.lock_timeout):
        recover(target)
    client.ping()
    digest, line, signer = fetch_line(client, ref, keys)
    if signer:
        say(f"signed by key {signer}")
    if replay:
        return _replay(target, client, line, say), Moved()
    local, missing = plan(target, line)
    if not missing:
        say(f"every layer of {ref} is here already")
        return target.store.get(local[line.tip.id]), Moved(skipped=len(line.layers))
    first = missing[0]
    if first.parent is None and not base:
        whole = first.stream.size if first.stream else 0
        raise UsageError(
            f"this store does not have the line's base (the sender's layer {first.id},"
            f" {escaped(first.name)})",
            hint=f"--base receives it whole ({human(whole)} compressed)"
            + (
                ", --replay replays the line's operations onto this deployment"
                if line.recipe
                else ""
            ),
        )
    _check_parents(line, missing, target)
    from ashcore.sizes import require_free

    require_free(target.store.path, "pulling a line")
    work = tempfile.mkdtemp(prefix=f"pull.{os.getpid()}.", dir=fleet_dir(target))
    arrived: list[tuple[LineLayer, str | None]] = []
    try:
        moved = Moved(skipped=len(line.layers) - len(missing))
        files = {}
        for layer in missing:  # every blob checked before anything is received
            if layer.stream is not None:
                path = os.path.join(work, f"{layer.id}.stream")
                with open(path, "wb") as f:
                    client.fetch_blob(
                        layer.stream.digest,
                        layer.stream.size,
                        f,
                        progress_line(f"layer {layer.id}", layer.stream.size),
                    )
                files[layer.id] = path
                moved.blobs, moved.bytes = moved.blobs + 1, moved.bytes + layer.stream.size
        store = target.store
        where = {k: store.layer_path(v) for k, v in identities(target).items()}
        for number, layer in enumerate(missing):
            name = None
            if layer.id in files:
                assert layer.stream is not None and layer.identity is not None
                name = f"{ARRIVING}{os.getpid()}.{number}"
                against = layer.stream.against
                parent = None
                if against is not None:
                    info = target.fs.info(where[against])
                    parent = (info.uuid, info.ctransid)
                arrived.append((layer, name))
                _receive(target, files[layer.id], layer, name, parent)
                os.unlink(files[layer.id])
                where[layer.identity] = os.path.join(store.layers_dir, name)
            else:
                arrived.append((layer, None))
        tip = _commit(target, ref, digest, local, arrived)
        arrived = []
        return tip, moved
    finally:
        for _, name in arrived:  # what did not become a layer goes
            if name is not None and os.path.lexists(os.path.join(target.store.layers_dir, name)):
                target.fs.delete(os.path.join(target.store.layers_dir, name))
        shutil.rmtree(work, ignore_errors=True)


def _check_parents(line: Line, missing: list[LineLayer], target: Target) -> None:
    """Every stream's parent is here or arrives before it."""
    known = set(identities(target))
    for layer in missing:
        stream = layer.stream
        if stream is not None and stream.against is not None and stream.against not in known:
            raise UsageError(
                f"the sender's layer {layer.id} is sent against a layer this store does not have",
                hint="pull its line from the base (--base), or --replay",
            )
        if layer.identity is not None:
            known.add(layer.identity)


def _receive(target: Target, blob: str, layer: LineLayer, name: str, parent: Parent | None) -> None:
    """Receive one checked stream as `layers/<name>` (read-only, with its sender's uuid),
    against this store's subvolume `parent` (its uuid and ctransid) when it is incremental."""
    assert layer.stream is not None and layer.identity is not None
    layers = target.store.layers_dir
    unpack = start(["zstd", "-d", "-q", "-c", blob], stdout=subprocess.PIPE)
    receive = start(
        ["btrfs", "receive", "-q", "-C", "-e", "--max-errors", "1", layers],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert unpack.stdout is not None and receive.stdin is not None
    refused: AshError | None = None
    try:
        relay(
            unpack.stdout,
            receive.stdin,
            name=name,
            identity=layer.identity,
            against=layer.stream.against,
            parent=parent,
        )
    except StreamError as e:
        refused = e
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            receive.stdin.close()
    if refused is not None:
        receive.kill()
    unpack.kill()
    receive.wait()
    unpack.wait()
    path = os.path.join(layers, name)
    if refused is None and receive.returncode != 0:
        assert receive.stderr is not None
        said = receive.stderr.read().decode(errors="replace").strip().splitlines()
        refused = BackendError(
            f"`btrfs receive` of the sender's layer {layer.id} failed:"
            f" {escaped(said[-1] if said else 'no message')}"
        )
    if refused is None:
        info = target.fs.info(path)
        if info.received_uuid != layer.identity or not target.fs.is_read_only(path):
            refused = StreamError(f"the sender's layer {layer.id} did not arrive as named")
        elif parent is not None and info.parent_uuid != parent[0]:
            refused = StreamError(
                f"the sender's layer {layer.id} was received against a subvolume that is not"
                " its parent's"
            )
    if refused is not None:
        if os.path.lexists(path):
            target.fs.delete(path)
        raise refused


def _label(target: Target, layer_id: int, labels: tuple[str, ...]) -> None:
    """Give an arrived layer its sender's labels, each one this store has not given."""
    from ashcore.labels import add_label

    for label in labels:
        try:
            add_label(target, label, layer_id)
        except UsageError as e:  # taken here, or another layer's name: this store's wins
            log.info("the label %s is not given to layer %d: %s", label, layer_id, e)


# -- making the arrived streams layers: journaled ---------------------------------------------
def _commit(
    target: Target,
    ref: Reference,
    digest: str,
    local: dict[int, int],
    arrived: list[tuple[LineLayer, str | None]],
) -> Layer:
    from ashcore.registry import manager_named, records_manager

    store = target.store
    journal = journal_path(target)
    tip: Layer | None = None
    with store.locked(target.config.lock_timeout):
        for layer, name in arrived:
            layer_id = store.reserve_id()
            write_json(journal, {"id": layer_id, "arriving": name})
            path = store.layer_path(layer_id)
            if name is not None:
                os.rename(os.path.join(store.layers_dir, name), path)
            manager = layer.manager if records_manager(layer.manager) else None
            origin = (
                layer.origin
                if layer.origin in OWN_ORIGINS or (layer.origin and manager_named(layer.origin))
                else None
            )
            record = Layer(
                id=layer_id,
                name=layer.name,
                parent=local.get(layer.parent) if layer.parent is not None else None,
                manager=manager,
                command=layer.command,
                status=Status(layer.status)
                if name is not None or layer.status == "pruned"
                else Status.PRUNED,
                created=layer.created,
                finished=layer.finished,
                packages=PackageDelta.from_json(layer.packages),
                uuid=target.fs.info(path).uuid if name is not None else None,
            )
            manifest = record.to_json() | {
                "plugin": origin,
                "deployment": None,
                "sets": layer.sets,
                READ_IN_ROOT: layer.sets_read_in_root,
                "pulled": {
                    "from": str(ref),
                    "digest": digest,
                    "id": layer.id,
                    "identity": layer.identity,
                },
            }
            write_json(store.manifest_path(layer_id), manifest)
            with store.transaction(store.db):
                store.insert_layer(record, origin=Origin.from_text(origin))
            os.unlink(journal)
            local[layer.id] = layer_id
            tip = record
            _label(target, layer_id, layer.labels)
    assert tip is not None
    return tip


def _replay(target: Target, client: Client, line: Line, say: Callable[[str], None]) -> Layer | None:
    """Run the line's recipe on the deployment with this root's managers."""
    from ashcore.recipe import apply

    if line.recipe is None:
        raise UsageError(
            "the line carries no recipe (its sender could not export it): it can only be"
            " received whole",
            hint="pull it without --replay (with --base if need be)",
        )
    head_before, _ = target.store.head(target.deployment().uuid)
    work = tempfile.mkdtemp(prefix=f"pull.{os.getpid()}.", dir=fleet_dir(target))
    try:
        for blob in (line.recipe, *line.bundles):
            assert blob.title is not None
            with open(os.path.join(work, blob.title), "xb") as f:
                client.fetch_blob(blob.digest, blob.size, f)
        apply(target, os.path.join(work, line.recipe.title or "recipe.toml"), say)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head, _ = target.store.head(target.deployment().uuid)
    return target.store.get(head) if head is not None and head != head_before else None
