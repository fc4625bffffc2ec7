"""The fleet's untrusted-input checks, without a registry: references, the artifact's manifest
and index, a send stream's commands on their way into `btrfs receive`, credentials."""

from __future__ import annotations

import base64
import io
import json
import struct
import uuid
from pathlib import Path

import pytest

from ashcore.errors import UsageError
from ashcore.fleet import artifact
from ashcore.fleet.artifact import ArtifactError, Blob, Line, LineLayer, Stream
from ashcore.fleet.oci import credentials
from ashcore.fleet.reference import looks_like_reference, parse_reference
from ashcore.fleet.streamcheck import MAGIC, StreamError, crc32c, relay

ME, PARENT, OTHER = (uuid.uuid4().hex for _ in range(3))


# -- references ---------------------------------------------------------------------------
def test_a_reference_names_its_registry_repository_tag_and_digest() -> None:
    ref = parse_reference("10.0.0.1:5000/lines/web:v1")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "10.0.0.1:5000", "lines/web", "v1", None,
    )  # fmt: skip
    digest = "sha256:" + "a" * 64
    pinned = parse_reference(f"registry.example.org/fleet@{digest}")
    assert pinned.pinned == digest and pinned.tag is None
    assert str(parse_reference("localhost/x:1")) == "localhost/x:1"


@pytest.mark.parametrize(
    "text",
    ["recipe.toml", "web:v1", "host:5000/UPPER:v1", "host:5000/a:b c", "host:5000/a@sha256:12",
     "host:5000/../x:1", "host:5000/"],
)  # fmt: skip
def test_what_is_not_a_reference_is_one_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)


def test_a_file_path_does_not_look_like_a_reference() -> None:
    assert not looks_like_reference("recipes/web.toml")
    assert looks_like_reference("host:5000/web:v1")


# -- the artifact --------------------------------------------------------------------------
def _line() -> tuple[bytes, list[Blob]]:
    digest = "sha256:" + "b" * 64
    layers = (
        LineLayer(1, None, "base", None, "ashctl", "setup", "committed", "t", "t",
                  {}, None, PARENT, Stream("sha256:" + "c" * 64, 10, None)),
        LineLayer(2, 1, "apt install x", "apt", "apt", "apt install x", "committed", "t", "t",
                  {"added": [{"name": "x", "version": "1"}]}, {"apt": {"x": "1"}}, ME,
                  Stream(digest, 20, PARENT)),
    )  # fmt: skip
    line = Line(layers, None, ())
    index = artifact.index_bytes(line)
    blobs = [
        Blob(artifact.LINE, artifact.digest_of(index), len(index)),
        Blob(artifact.STREAM, "sha256:" + "c" * 64, 10),
        Blob(artifact.STREAM, digest, 20),
    ]
    return index, blobs


def test_a_pushed_index_reads_back_as_the_same_line() -> None:
    index, blobs = _line()
    line = artifact.parse_index(index, blobs)
    assert [la.id for la in line.layers] == [1, 2] and line.tip.identity == ME
    manifest = artifact.manifest_bytes(blobs[0], line, {})
    got_index, got_blobs = artifact.parse_manifest(manifest)
    assert got_index.digest == blobs[0].digest and len(got_blobs) == 3


def _tampered(change: dict[str, object], layer: int = 1) -> bytes:
    index, _ = _line()
    data = json.loads(index)
    data["layers"][layer].update(change)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"parent": 7},  # a parent not before it
        {"status": "pending"},
        {"identity": "../../etc"},
        {"stream": {"digest": "sha256:" + "d" * 64, "size": 20, "against": PARENT}},  # not listed
        {"stream": {"digest": "sha256:" + "b" * 64, "size": 21, "against": PARENT}},  # size
        {"packages": {"added": [{"name": 1}]}},
        {"sets": {"apt": {"x": 1}}},
        {"name": "x" * 70000},
    ],
)
def test_a_malformed_index_is_refused(change: dict[str, object]) -> None:
    _, blobs = _line()
    with pytest.raises(ArtifactError):
        artifact.parse_index(_tampered(change), blobs)


def test_another_artifact_type_is_not_a_line() -> None:
    manifest = json.dumps({"schemaVersion": 2, "artifactType": "application/x-other",
                           "layers": []}).encode()  # fmt: skip
    with pytest.raises(ArtifactError, match="not a line of layers"):
        artifact.parse_manifest(manifest)


# -- streams ---------------------------------------------------------------------------------
def _command(kind: int, *attrs: tuple[int, bytes]) -> bytes:
    body = b"".join(struct.pack("<HH", k, len(v)) + v for k, v in attrs)
    header = struct.pack("<IHI", len(body), kind, 0)
    return struct.pack("<IHI", len(body), kind, crc32c(header + body)) + body


def _stream(*commands: bytes) -> bytes:
    return MAGIC + struct.pack("<I", 1) + b"".join(commands) + _command(21)


def _snapshot(identity: str = ME, against: str = PARENT) -> bytes:
    return _command(
        2, (15, b"42"), (1, uuid.UUID(identity).bytes), (2, b"\0" * 8),
        (20, uuid.UUID(against).bytes), (21, b"\0" * 8),
    )  # fmt: skip


def _relay(stream: bytes) -> bytes:
    out = io.BytesIO()
    relay(io.BytesIO(stream), out, name="arriving.1.0", identity=ME, against=PARENT)
    return out.getvalue()


def test_a_checked_stream_is_passed_on_renamed_with_a_valid_checksum() -> None:
    out = _relay(_stream(_snapshot(), _command(3, (15, b"etc/new"))))
    length, kind, crc = struct.unpack_from("<IHI", out, len(MAGIC) + 4)
    body = out[len(MAGIC) + 14 : len(MAGIC) + 14 + length]
    assert kind == 2 and b"arriving.1.0" in body and b"42" not in body
    assert crc == crc32c(struct.pack("<IHI", length, kind, 0) + body)


@pytest.mark.parametrize(
    "stream",
    [
        _stream(_snapshot(), _command(3, (15, b"/etc/passwd"))),  # absolute
        _stream(_snapshot(), _command(9, (15, b"a"), (16, b"../../x"))),  # rename out
        _stream(_snapshot(), _command(10, (15, b"x"), (17, b"../y"))),  # hard link out
        _stream(_snapshot(), _command(16, (15, b"x"), (20, uuid.UUID(OTHER).bytes))),  # clone
        _stream(_snapshot(identity=OTHER)),  # another layer than named
        _stream(_snapshot(against=OTHER)),  # against another parent
        _stream(_snapshot(), _snapshot()),  # two subvolumes
        _stream(_command(3, (15, b"x"))),  # no subvolume first
        _stream(_snapshot(), _command(99)),  # unknown command
        _stream(_snapshot())[:-6],  # truncated, no end
        b"not a stream at all",
    ],
)
def test_a_stream_that_could_leave_its_layer_is_refused(stream: bytes) -> None:
    with pytest.raises(StreamError):
        _relay(stream)


def test_a_symlinks_target_is_data_not_a_path() -> None:
    _relay(_stream(_snapshot(), _command(8, (15, b"etc/link"), (17, b"/usr/lib/../x"))))


# -- credentials --------------------------------------------------------------------------
def test_credentials_come_from_the_auth_file_repository_entry_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def auth(text: str) -> dict[str, str]:
        return {"auth": base64.b64encode(text.encode()).decode()}

    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"h:5000": auth("u:p"), "h:5000/lines/web": auth("w:q")}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    assert credentials(parse_reference("h:5000/lines/web:v1")) == ("w", "q")
    assert credentials(parse_reference("h:5000/other:v1")) == ("u", "p")
    assert credentials(parse_reference("elsewhere:1/x:v1")) is None
    with pytest.raises(UsageError):
        credentials(parse_reference("h:5000/x:1"), str(tmp_path / "missing.json"))
