"""The registry rig of tests/registry.py against Debian's docker-registry (2.8).

What the server does, as these tests pin it (for the fleet client):
- `GET /v2/` without or with wrong credentials: 401, `WWW-Authenticate: Basic realm=...` and
  a JSON body `{"errors": [{"code": "UNAUTHORIZED", ...}]}`; with them: 200, body `{}`.
- Uploads: `POST /v2/<repo>/blobs/uploads/` answers 202 with an absolute `Location` (built
  from the request's Host) that already holds a query (`?_state=...`), so the digest is
  appended with `&digest=`; a PUT of the whole body there is a monolithic upload (201,
  `Docker-Content-Digest`, absolute `Location` of the blob). A POST with `?digest=` and a
  body is NOT a one-request upload: it opens a session and drops the body.
- Blob GET is served by the registry itself (filesystem driver: no redirect), honours Range.
- Manifests: PUT needs the `Content-Type` of the manifest's media type; a blob it names
  (config too, the empty `{}` config included) must be in the repository (else 400
  MANIFEST_BLOB_UNKNOWN). `artifactType`, `subject` and the empty config's media type are
  stored as sent. GET or HEAD of an OCI manifest without `Accept` naming the OCI media type is
  404 MANIFEST_UNKNOWN ("OCI manifest found, but accept header does not support OCI
  manifests"), even by digest; with it, the bytes come back unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from email.message import Message
from pathlib import Path

import pytest

from tests.registry import (
    ADDRESS,
    PORT,
    Registry,
    entered,
    namespaces,
    running_registry,
    sweep_orphans,
)

pytestmark = pytest.mark.btrfs

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "registry") as reg:
        yield reg


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def strict_context(reg: Registry) -> ssl.SSLContext:
    """Trusts only the test CA, with the checks Python 3.13 makes by default."""
    context = ssl.create_default_context(cafile=str(reg.ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def fetch(
    reg: Registry,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    password: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Message, bytes]:
    """One request from the receiver's namespace with urllib; `password=""` sends none."""
    all_headers = dict(headers or {})
    password = reg.password if password is None else password
    if password:
        token = base64.b64encode(f"{reg.user}:{password}".encode()).decode()
        all_headers["Authorization"] = f"Basic {token}"
    url = path if "://" in path else reg.url + path
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    with entered(reg.receiver_ns):
        try:
            with urllib.request.urlopen(
                request, context=context or strict_context(reg), timeout=10
            ) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


def upload_blob(reg: Registry, repo: str, data: bytes) -> str:
    """A monolithic upload (POST, then PUT of the whole body); returns the digest."""
    status, headers, _ = fetch(reg, "POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202
    location = headers["Location"]
    assert location.startswith(f"{reg.url}/v2/{repo}/blobs/uploads/")
    assert "?" in location  # the upload state rides in the query: the digest is appended
    digest = digest_of(data)
    status, headers, _ = fetch(
        reg,
        "PUT",
        f"{location}&digest={digest}",
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 201
    assert headers["Docker-Content-Digest"] == digest
    assert headers["Location"] == f"{reg.url}/v2/{repo}/blobs/{digest}"
    return digest


def test_v2_answers_only_with_the_right_credentials(registry: Registry) -> None:
    status, headers, body = fetch(registry, "GET", "/v2/", password="")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"

    assert fetch(registry, "GET", "/v2/")[0] == 200

    status, _, body = fetch(registry, "GET", "/v2/", password=registry.password + "x")
    assert status == 401
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"


def test_tls_is_verified_against_the_test_ca_only(registry: Registry) -> None:
    system_only = ssl.create_default_context()
    with pytest.raises(urllib.error.URLError) as raised:
        fetch(registry, "GET", "/v2/", context=system_only)
    assert isinstance(raised.value.reason, ssl.SSLCertVerificationError)
    assert (registry.cert_dir / "ca.crt").read_bytes() == registry.ca.read_bytes()
    assert sorted(p.name for p in registry.cert_dir.iterdir()) == ["ca.crt"]


def test_blob_and_artifact_manifest_round_trip(registry: Registry) -> None:
    repo = "ash/fleet"
    layer = os.urandom(70_000)
    layer_digest = upload_blob(registry, repo, layer)

    status, headers, body = fetch(registry, "HEAD", f"/v2/{repo}/blobs/{layer_digest}")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(layer))
    assert headers["Docker-Content-Digest"] == layer_digest
    status, _, body = fetch(registry, "GET", f"/v2/{repo}/blobs/{layer_digest}")
    assert (status, body == layer) == (200, True)
    assert registry.blob_file(layer_digest).read_bytes() == layer

    empty_digest = upload_blob(registry, repo, b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.ashlayers.layer.v1",
        "config": {"mediaType": OCI_EMPTY, "digest": empty_digest, "size": 2, "data": "e30="},
        "layers": [
            {
                "mediaType": "application/vnd.ashlayers.sendstream.v1",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
        "annotations": {"org.opencontainers.image.title": "layer 2"},
    }
    sent = json.dumps(manifest, indent=3).encode()  # odd spacing: the bytes must survive
    status, headers, _ = fetch(
        registry,
        "PUT",
        f"/v2/{repo}/manifests/layer-2",
        body=sent,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert status == 201
    assert headers["Docker-Content-Digest"] == digest_of(sent)

    for reference in ("layer-2", digest_of(sent)):
        status, headers, body = fetch(
            registry, "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
        )
        assert status == 200
        assert body == sent
        assert headers["Content-Type"] == OCI_MANIFEST
        assert headers["Docker-Content-Digest"] == digest_of(sent)

    # Without the OCI type in Accept, 2.8 says the manifest is unknown.
    status, _, body = fetch(registry, "GET", f"/v2/{repo}/manifests/layer-2")
    assert status == 404
    assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_a_manifest_naming_a_missing_blob_is_refused(registry: Registry) -> None:
    repo = "ash/fleet"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.ashlayers.layer.v1",
        "config": {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2},
        "layers": [],
    }
    status, _, body = fetch(
        registry,
        "PUT",
        f"/v2/{repo}/manifests/v1",
        body=json.dumps(manifest).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert status == 400
    assert json.loads(body)["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


def test_a_client_in_the_sender_namespace_uses_the_auth_file_and_cert_dir(
    registry: Registry, tmp_path: Path
) -> None:
    """`run` keeps the host's mounts (a tmpfs the test mounts is seen) and passes the
    environment; the client finds everything through REGISTRY_AUTH_FILE and the cert dir."""
    auths = json.loads(registry.auth_file.read_text())["auths"]
    assert list(auths) == [registry.host] == [f"{ADDRESS}:{PORT}"]
    assert registry.auth_file.stat().st_mode & 0o077 == 0

    mounted = tmp_path / "mounted"
    mounted.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mounted)], check=True)
    try:
        client = mounted / "client.py"
        client.write_text(
            "import base64, json, os, ssl, sys, urllib.request\n"
            "host, cert_dir = sys.argv[1:]\n"
            "auths = json.load(open(os.environ['REGISTRY_AUTH_FILE']))['auths']\n"
            "context = ssl.create_default_context(cafile=os.path.join(cert_dir, 'ca.crt'))\n"
            "request = urllib.request.Request(f'https://{host}/v2/_catalog',\n"
            "    headers={'Authorization': 'Basic ' + auths[host]['auth']})\n"
            "print(urllib.request.urlopen(request, context=context, timeout=10).read().decode())\n"
        )
        env = {**os.environ, "REGISTRY_AUTH_FILE": str(registry.auth_file)}
        result = registry.run(
            registry.sender_ns,
            [sys.executable, str(client), registry.host, str(registry.cert_dir)],
            env=env,
            check=True,
        )
        assert json.loads(result.stdout) == {"repositories": []}
        assert (
            registry.run(registry.sender_ns, ["ip", "-o", "-4", "addr"]).stdout.count("inet ") == 2
        )  # lo and eth0
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_the_registry_is_unreachable_from_the_hosts_namespace(registry: Registry) -> None:
    own = os.stat("/proc/thread-self/ns/net").st_ino
    host_addresses = subprocess.run(
        ["ip", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    assert f" {ADDRESS}/" not in host_addresses
    inside = registry.run(registry.registry_ns, ["ip", "-o", "addr"], check=True).stdout
    assert f" {ADDRESS}/" in inside
    # From the host the address leads out of the machine; some networks accept any TCP
    # connection there (a transparent proxy), so the proof is that no TLS session with the
    # registry comes about and the registry sees no request.
    requests_before = registry.log.read_text().count('"GET /v2/ ')
    request = urllib.request.Request(
        f"{registry.url}/v2/", headers={"Authorization": registry.authorization}
    )
    with pytest.raises(OSError):
        urllib.request.urlopen(request, context=strict_context(registry), timeout=2)
    assert registry.log.read_text().count('"GET /v2/ ') == requests_before
    assert fetch(registry, "GET", "/v2/")[0] == 200
    # The access log line is written just after the answer: wait for it.
    deadline = time.monotonic() + 5
    while registry.log.read_text().count('"GET /v2/ ') == requests_before:
        assert time.monotonic() < deadline, "the registry logged no request"
        time.sleep(0.01)
    assert registry.log.read_text().count('"GET /v2/ ') == requests_before + 1
    # entered() moved this thread and brought it back.
    assert os.stat("/proc/thread-self/ns/net").st_ino == own


def test_stop_and_start_keep_the_storage(registry: Registry) -> None:
    digest = upload_blob(registry, "ash/fleet", b"kept across a restart")
    registry.stop()
    assert registry.pid is None
    with pytest.raises(urllib.error.URLError) as raised:
        fetch(registry, "GET", "/v2/")
    assert isinstance(raised.value.reason, ConnectionRefusedError)
    registry.start()
    assert registry.pid is not None
    assert fetch(registry, "HEAD", f"/v2/ash/fleet/blobs/{digest}")[0] == 200


def test_plain_http_and_anonymous_variants(tmp_path: Path) -> None:
    with running_registry(tmp_path / "plain", tls=False) as reg:
        assert reg.url == f"http://{ADDRESS}:{PORT}"
        assert fetch(reg, "GET", "/v2/", password="")[0] == 401
        assert fetch(reg, "GET", "/v2/")[0] == 200
        with pytest.raises(urllib.error.URLError):
            fetch(reg, "GET", f"https://{reg.host}/v2/")
    with running_registry(tmp_path / "open", auth=False) as reg:
        assert reg.password == ""
        assert fetch(reg, "GET", "/v2/_catalog", password="")[0] == 200


def _holders(inodes: set[int]) -> list[int]:
    """The pids of processes in any of the network namespaces `inodes`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns/net").stat().st_ino in inodes:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["normal", "exception", "ctrl-c", "server-died"])
def test_nothing_remains_after_the_context(tmp_path: Path, ending: str) -> None:
    raised: type[BaseException] | None = {
        "exception": Boom,
        "ctrl-c": KeyboardInterrupt,
    }.get(ending)
    names: list[str] = []
    inodes: set[int] = set()
    pids: list[int] = []

    def body() -> None:
        with running_registry(tmp_path / "registry") as reg:
            names.extend([reg.registry_ns, reg.sender_ns, reg.receiver_ns])
            inodes.update(os.stat(f"/run/netns/{n}").st_ino for n in names)
            assert reg.pid is not None
            pids.append(reg.pid)
            assert set(names) <= set(namespaces())
            assert _holders(inodes) == pids
            if ending == "server-died":
                os.kill(reg.pid, signal.SIGKILL)
            if raised is not None:
                raise raised()

    if raised is None:
        body()
    else:
        with pytest.raises(raised):
            body()

    assert len(names) == 3
    assert not set(names) & set(namespaces())
    assert not any(Path(f"/run/netns/{n}").exists() for n in names)
    assert _holders(inodes) == []
    cmdline = Path(f"/proc/{pids[0]}/cmdline")
    assert not cmdline.exists() or b"docker-registry" not in cmdline.read_bytes()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "to-sender" not in links and "to-receiver" not in links and "br0" not in links


def test_namespaces_of_a_dead_run_are_swept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"ashreg-{dead.pid}-1-0000-reg", f"ashreg-{os.getpid()}-999-0000-reg"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert stale in sweep_orphans()
        assert stale not in namespaces()
        assert live in namespaces()
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
