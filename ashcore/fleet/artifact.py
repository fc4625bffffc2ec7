"""The artifact a pushed line is: one OCI image manifest of its own `artifactType` (the image
spec's guidance for artifacts: an empty config, the content as layers).

    manifest  artifactType application/vnd.ashlayers.line.v1
      config  application/vnd.oci.empty.v1+json ({})
      layers  application/vnd.ashlayers.line.v1+json     the line's index (below)
              application/vnd.ashlayers.btrfs-send.v1+zstd  one per layer with a snapshot:
                                                        `btrfs send` against the layer's
                                                        nearest ancestor that has one (the
                                                        base: a full stream)
              application/vnd.ashlayers.recipe.v2+toml   the line's recipe (ashcore/recipe.py)
              application/vnd.ashlayers.bundle.v1.tar    its bundles, titled as the recipe
                                                        names them

The index holds every layer's record from the base to the tip (name, command, manager,
status, package delta, every manager's installed set, parent) and, per stream, its digest,
size and the identities (btrfs uuids) of its layer and of the layer it is sent against.

Everything here is read as untrusted: every field is checked for its type and form, every
blob named in the index must be in the manifest with the same size, and sizes are bounded.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ashcore.errors import AshError
from ashcore.model import STATUSES

ARTIFACT_TYPE = "application/vnd.ashlayers.line.v1"
SIGNATURE_TYPE = "application/vnd.ashlayers.signature.v1"
LINE = "application/vnd.ashlayers.line.v1+json"
STREAM = "application/vnd.ashlayers.btrfs-send.v1+zstd"
RECIPE = "application/vnd.ashlayers.recipe.v2+toml"
BUNDLE = "application/vnd.ashlayers.bundle.v1.tar"
SIGNATURE = "application/pgp-signature"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_DATA).hexdigest()
TITLE = "org.opencontainers.image.title"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"

INDEX_LIMIT = 64 << 20  # bytes: a line's index (records and installed sets of every layer)
TEXT_LIMIT = 1 << 16  # characters in one name or command
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{32}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class ArtifactError(AshError):
    """What arrived is not a line of layers, or not a well-formed one."""


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: str
    size: int
    title: str | None = None

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.title:
            d["annotations"] = {TITLE: self.title}
        return d


@dataclass(frozen=True)
class Stream:
    digest: str
    size: int
    against: str | None  # the identity of the layer it is sent against; None: a full stream


@dataclass(frozen=True)
class LineLayer:
    """One layer of a pushed line, as its sender recorded it."""

    id: int  # the sender's id
    parent: int | None  # the sender's id of its parent (None: the base)
    name: str
    manager: str | None
    origin: str | None  # what made it on the sender: a manager's name, "run", "replay", None
    command: str
    status: str
    created: str
    finished: str | None
    packages: dict[str, Any]
    sets: dict[str, Any] | None
    identity: str | None  # its snapshot's btrfs identity (None: pruned, no snapshot)
    stream: Stream | None
    # Its sets were read with the root's own bindings (ashcore/sets.py READ_IN_ROOT): the
    # receiver's record says so too, else its doctor takes an empty set for a failed read.
    sets_read_in_root: bool = False
    labels: tuple[str, ...] = ()  # its labels on the sender (ashcore/labels.py)

    def to_json(self) -> dict[str, Any]:
        labels = {"labels": list(self.labels)} if self.labels else {}  # older lines: none
        return labels | {
            "id": self.id,
            "parent": self.parent,
            "name": self.name,
            "manager": self.manager,
            "origin": self.origin,
            "command": self.command,
            "status": self.status,
            "created": self.created,
            "finished": self.finished,
            "packages": self.packages,
            "sets": self.sets,
            "sets_read_in_root": self.sets_read_in_root,
            "identity": self.identity,
            "stream": None
            if self.stream is None
            else {
                "digest": self.stream.digest,
                "size": self.stream.size,
                "against": self.stream.against,
            },
        }


@dataclass(frozen=True)
class Line:
    layers: tuple[LineLayer, ...]  # base first
    recipe: Blob | None
    bundles: tuple[Blob, ...]

    @property
    def tip(self) -> LineLayer:
        return self.layers[-1]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index_bytes(line: Line) -> bytes:
    return json.dumps(
        {"format": "ashlayers-line", "version": 1, "layers": [la.to_json() for la in line.layers]},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def manifest_bytes(index: Blob, line: Line, annotations: dict[str, str]) -> bytes:
    layers = [index.descriptor()]
    layers += [
        Blob(STREAM, la.stream.digest, la.stream.size, f"layer-{la.id}.stream").descriptor()
        for la in line.layers
        if la.stream is not None
    ]
    if line.recipe is not None:
        layers.append(line.recipe.descriptor())
    layers += [b.descriptor() for b in line.bundles]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": len(EMPTY_DATA)},
        "layers": layers,
        "annotations": annotations,
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


# -- reading, as untrusted input -------------------------------------------------------------
def _fail(what: str) -> ArtifactError:
    return ArtifactError(
        f"not a usable line of layers: {what}", hint="push it again from its sender"
    )


def _load(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _fail(f"its {what} is not JSON") from None


def _descriptor(d: Any) -> Blob:
    if not isinstance(d, dict):
        raise _fail("a descriptor is not an object")
    media, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
    if not isinstance(media, str) or not isinstance(digest, str) or not _DIGEST.match(digest):
        raise _fail("a descriptor has no sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _fail("a descriptor has no size")
    annotations = d.get("annotations") or {}
    title = annotations.get(TITLE) if isinstance(annotations, dict) else None
    if title is not None and (not isinstance(title, str) or not _FILE.match(title)):
        raise _fail(f"a blob's title is not a plain file name: {title!r}")
    return Blob(media, digest, size, title)


def parse_manifest(data: bytes) -> tuple[Blob, list[Blob]]:
    """(the index's blob, every blob) of an artifact manifest; refuses any other artifact."""
    manifest = _load(data, "manifest")
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise _fail("its manifest is not an OCI image manifest")
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        kind = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
        raise ArtifactError(
            f"that artifact is not a line of layers (its type is {kind!r})",
            hint="name what `ashctl push` pushed",
        )
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _fail("its manifest has no layers")
    blobs = [_descriptor(d) for d in layers]
    index = [b for b in blobs if b.media_type == LINE]
    if len(index) != 1:
        raise _fail("its manifest has no single index")
    if index[0].size > INDEX_LIMIT:
        raise _fail(f"its index is larger than {INDEX_LIMIT} bytes")
    return index[0], blobs


def _text(record: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > TEXT_LIMIT or "\x00" in value:
        raise _fail(f"a layer's {key} is not text")
    return value


def _integer(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(f"{what} is not a number")
    return value


def _layer(record: Any, known: set[int], blobs: dict[str, Blob]) -> LineLayer:
    if not isinstance(record, dict):
        raise _fail("a layer is not an object")
    layer_id = _integer(record.get("id"), "a layer's id")
    parent = record.get("parent")
    if parent is not None and _integer(parent, "a layer's parent") not in known:
        raise _fail(f"layer {layer_id}'s parent {parent} is not before it in the line")
    if (parent is None) != (not known):
        raise _fail("the line does not start at a base and go on from parent to child")
    status = _text(record, "status")
    if status not in STATUSES or status == "pending":
        raise _fail(f"layer {layer_id} has the status {status!r}")
    identity = record.get("identity")
    if identity is not None and (not isinstance(identity, str) or not _UUID.match(identity)):
        raise _fail(f"layer {layer_id}'s identity is not a uuid")
    stream = None
    if (raw := record.get("stream")) is not None:
        if not isinstance(raw, dict) or identity is None:
            raise _fail(f"layer {layer_id}'s stream is malformed")
        digest, size, against = raw.get("digest"), raw.get("size"), raw.get("against")
        if not isinstance(digest, str) or digest not in blobs or blobs[digest].media_type != STREAM:
            raise _fail(f"layer {layer_id}'s stream is not in the manifest")
        size = _integer(size, "a stream's size")
        if size != blobs[digest].size:
            raise _fail(f"layer {layer_id}'s stream size differs from the manifest's")
        if against is not None and (not isinstance(against, str) or not _UUID.match(against)):
            raise _fail(f"layer {layer_id}'s stream parent is not a uuid")
        stream = Stream(digest, size, against)
    for key in ("packages",):
        if not isinstance(record.get(key), dict):
            raise _fail(f"layer {layer_id}'s {key} is malformed")
    sets = record.get("sets")
    if sets is not None and not _is_sets(sets):
        raise _fail(f"layer {layer_id}'s installed sets are malformed")
    _check_delta(record["packages"], layer_id)
    labels = record.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _fail(f"layer {layer_id}'s labels are malformed")
    from ashcore.errors import UsageError
    from ashcore.labels import check_label

    try:
        for label in labels:
            check_label(label)
    except UsageError as e:
        raise _fail(f"layer {layer_id}'s labels are malformed: {e.args[0]}") from e
    return LineLayer(
        id=layer_id,
        parent=parent,
        name=_text(record, "name"),
        manager=_text(record, "manager", optional=True),
        origin=_text(record, "origin", optional=True),
        command=_text(record, "command"),
        status=status,
        created=_text(record, "created"),
        finished=_text(record, "finished", optional=True),
        packages=record["packages"],
        sets=sets,
        identity=identity,
        stream=stream,
        sets_read_in_root=sets is not None and record.get("sets_read_in_root") is True,
        labels=tuple(labels),
    )


def _is_sets(sets: Any) -> bool:
    return isinstance(sets, dict) and all(
        isinstance(k, str)
        and (
            v is None
            or (
                isinstance(v, dict)
                and all(isinstance(x, str) and isinstance(y, str) for x, y in v.items())
            )
        )
        for k, v in sets.items()
    )


def _check_delta(packages: dict[str, Any], layer_id: int) -> None:
    shapes = {
        "added": ("name", "version"),
        "removed": ("name", "version"),
        "upgraded": ("name", "old", "new"),
        "downgraded": ("name", "old", "new"),
    }
    for key, value in packages.items():
        if key not in shapes or not isinstance(value, list):
            raise _fail(f"layer {layer_id}'s package delta is malformed")
        for item in value:
            if not isinstance(item, dict) or any(
                not isinstance(item.get(f), str) for f in shapes[key]
            ):
                raise _fail(f"layer {layer_id}'s package delta is malformed")


def parse_index(data: bytes, blobs: list[Blob]) -> Line:
    index = _load(data, "index")
    if not isinstance(index, dict) or index.get("format") != "ashlayers-line":
        raise _fail("its index is not a line's")
    if index.get("version") != 1:
        raise ArtifactError(
            f"the line's format version {index.get('version')!r} is not known here",
            hint="update ashlayers on this machine",
        )
    records = index.get("layers")
    if not isinstance(records, list) or not records:
        raise _fail("its index names no layer")
    by_digest = {b.digest: b for b in blobs}
    known: set[int] = set()
    layers: list[LineLayer] = []
    for record in records:
        layer = _layer(record, known, by_digest)
        if layer.id in known:
            raise _fail(f"layer {layer.id} is twice in the line")
        if layers and layer.parent != layers[-1].id:
            raise _fail("the line is not one line from the base to its tip")
        known.add(layer.id)
        layers.append(layer)
    if layers[0].stream is not None and layers[0].stream.against is not None:
        raise _fail("the base's stream is not a full stream")
    recipes = [b for b in blobs if b.media_type == RECIPE]
    bundles = tuple(b for b in blobs if b.media_type == BUNDLE)
    if len(recipes) > 1 or any(b.title is None for b in bundles):
        raise _fail("its recipe is malformed")
    return Line(tuple(layers), recipes[0] if recipes else None, bundles)
