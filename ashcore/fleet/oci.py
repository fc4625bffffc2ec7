"""A registry client: the OCI distribution spec's blob and manifest calls, and nothing more.

Credentials and trust follow the containers conventions, as skopeo and podman read them:
- containers-auth.json(5): `--authfile`, else `REGISTRY_AUTH_FILE`, else
  `$XDG_RUNTIME_DIR/containers/auth.json`, `/run/containers/<uid>/auth.json`,
  `$XDG_CONFIG_HOME/containers/auth.json`, `~/.docker/config.json`; the entry for
  `host:port/repository` wins over `host:port`. Credential helpers are not run.
- containers-certs.d(5): `--cert-dir DIR`, else `/etc/containers/certs.d/HOST:PORT/` (then
  `/etc/docker/certs.d/`): every `*.crt` is a CA trusted beside the system's, a `*.cert` with
  its `*.key` a client certificate.
- `--tls-verify=false` takes any certificate, and plain HTTP from a registry without TLS.

A registry answers 401 with `WWW-Authenticate`: Basic (htpasswd) is answered with the
credentials, Bearer by fetching a token from its realm for the repository's scope.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Callable
from typing import IO, Any

from ashcore.errors import AshError, UsageError
from ashcore.fleet.reference import Reference

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_LIMIT = 4 << 20  # bytes: the distribution spec's advice for what a registry accepts
CHUNK = 1 << 20
TIMEOUT = 60.0

Progress = Callable[[int], None]


class RegistryError(AshError):
    """A registry refused, was unreachable, or answered something unusable."""


def _auth_files(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return [os.environ["REGISTRY_AUTH_FILE"]]
    home = os.path.expanduser("~")
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = []
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers/auth.json"))
    files += [
        f"/run/containers/{os.getuid()}/auth.json",
        os.path.join(config, "containers/auth.json"),
        os.path.join(home, ".docker/config.json"),
    ]
    return files


def credentials(ref: Reference, auth_file: str | None = None) -> tuple[str, str] | None:
    """(user, password) for the reference's registry, from the first auth file that has it."""
    for path in _auth_files(auth_file):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            if path == auth_file:
                raise UsageError(f"no auth file {path}", hint="check --authfile") from None
            continue
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read the auth file {path}: {e}") from None
        auths = data.get("auths") if isinstance(data, dict) else None
        if not isinstance(auths, dict):
            continue
        for key in (f"{ref.registry}/{ref.repository}", ref.registry):
            entry = auths.get(key) or auths.get(f"https://{key}")
            if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
                try:
                    user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    sep = ""
                if not sep:
                    raise UsageError(f"{path}: the entry for {key} is not base64 of user:password")
                return user, password
    return None


def tls_context(registry: str, verify: bool, cert_dir: str | None) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    dirs = (
        [cert_dir]
        if cert_dir
        else [
            f"/etc/containers/certs.d/{registry}",
            f"/etc/docker/certs.d/{registry}",
        ]
    )
    for d in dirs:
        if not os.path.isdir(d):
            if d == cert_dir:
                raise UsageError(f"no certificate folder {d}", hint="check --cert-dir")
            continue
        for ca in sorted(glob.glob(os.path.join(d, "*.crt"))):
            try:
                context.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                raise UsageError(f"cannot use the CA certificate {ca}: {e}") from None
        for cert in sorted(glob.glob(os.path.join(d, "*.cert"))):
            key = cert[: -len(".cert")] + ".key"
            context.load_cert_chain(cert, key if os.path.exists(key) else None)
        break
    return context


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y"` -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for part in _split_params(rest):
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return scheme.lower(), params


def _split_params(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += c
    if current.strip():
        parts.append(current)
    return parts


class Response:
    """A response whose body is read by the caller (or closed)."""

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> None:
        self.raw, self.conn = raw, conn
        self.status = raw.status
        self.headers = raw.headers

    def read(self, limit: int | None = None) -> bytes:
        try:
            data = self.raw.read() if limit is None else self.raw.read(limit + 1)
        finally:
            self.close()
        if limit is not None and len(data) > limit:
            raise RegistryError(f"the registry answered more than {limit} bytes")
        return data

    def close(self) -> None:
        self.raw.close()
        self.conn.close()


class Client:
    """One repository of one registry."""

    def __init__(
        self,
        ref: Reference,
        *,
        tls_verify: bool = True,
        cert_dir: str | None = None,
        auth_file: str | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.ref = ref
        self.tls_verify = tls_verify
        self.context = tls_context(ref.registry, tls_verify, cert_dir)
        self.creds = credentials(ref, auth_file)
        self.timeout = timeout
        self.scheme = "https"
        self._authorization: str | None = None
        self._uploaded = 0

    # -- transport --------------------------------------------------------------------------
    def _connect(self, netloc: str, scheme: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(
                netloc, timeout=self.timeout, context=self.context, blocksize=CHUNK
            )
        return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=CHUNK)

    def _once(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | IO[bytes] | _Reader | None,
    ) -> Response:
        parts = urllib.parse.urlsplit(url)
        conn = self._connect(parts.netloc, parts.scheme)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, target, body=body, headers=headers)
            return Response(conn.getresponse(), conn)
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise RegistryError(
                f"{self.ref.registry}: its TLS certificate is not trusted ({e.verify_message})",
                hint=f"put its CA in /etc/containers/certs.d/{self.ref.registry}/ca.crt or pass"
                " --cert-dir (--tls-verify=false for a test registry)",
            ) from None
        except ssl.SSLError as e:
            conn.close()
            if not self.tls_verify and parts.scheme == "https" and self.scheme == "https":
                # --tls-verify=false: a registry without TLS is spoken to in plain HTTP.
                self.scheme = "http"
                return self._once(method, url.replace("https://", "http://", 1), headers, body)
            raise RegistryError(f"{self.ref.registry}: TLS failed: {e}") from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            reason = (
                e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            )
            if isinstance(e, socket.timeout):
                reason = "timed out"
            raise RegistryError(
                f"cannot reach the registry {self.ref.registry}: {reason}",
                hint="check the address and that the registry is running",
            ) from None

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.ref.registry}/v2/{self.ref.repository}/{path}"

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | IO[bytes] | _Reader | None = None,
        ok: tuple[int, ...] = (200,),
        rewind: int | None = None,
    ) -> Response:
        """One call, with authentication on a 401 and redirects followed (for GET and HEAD).
        `rewind`: where a file body starts, to send it again after a 401."""
        headers = dict(headers or {})
        refused = 0
        for _ in range(8):
            if self._authorization:
                headers["Authorization"] = self._authorization
            response = self._once(method, url, headers, body)
            if response.status == 401 and refused < 2:
                refused += 1
                challenge = response.headers.get("WWW-Authenticate", "")
                response.read(MANIFEST_LIMIT)
                self._authenticate(challenge, headers.get("Authorization"))
                if rewind is not None and hasattr(body, "seek"):
                    body.seek(rewind)  # type: ignore[union-attr]
                continue
            if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = response.headers.get("Location", "")
                response.read(MANIFEST_LIMIT)
                url = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(url).netloc != self.ref.registry:
                    headers.pop("Authorization", None)  # a storage backend's signed URL
                continue
            if response.status not in ok:
                raise self._refused(method, url, response)
            return response
        raise RegistryError(f"{self.ref.registry}: too many redirects or authentications")

    def _refused(self, method: str, url: str, response: Response) -> RegistryError:
        text = response.read(MANIFEST_LIMIT) if method != "HEAD" else b""
        detail = ""
        try:
            errors = json.loads(text).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors[:2])
        except (ValueError, AttributeError):
            detail = text[:200].decode("utf-8", "replace").strip()
        what = urllib.parse.urlsplit(url).path
        if response.status == 401:
            return RegistryError(
                f"{self.ref.registry}: not authorized ({detail or 'HTTP 401'})",
                hint="log in with `podman login` or `skopeo login`, or give --authfile",
            )
        if response.status == 403:
            return RegistryError(f"{self.ref.registry}: access denied to {self.ref.repository}")
        return RegistryError(
            f"{self.ref.registry}: {method} {what} answered HTTP {response.status}"
            + (f" ({detail})" if detail else "")
        )

    def _authenticate(self, challenge: str, sent: str | None) -> None:
        scheme, params = _challenge(challenge)
        if self.creds is None and scheme == "basic":
            raise RegistryError(
                f"{self.ref.registry}: not authorized (the registry asks for credentials and"
                " none are known for it)",
                hint="log in with `podman login` or `skopeo login`, or give --authfile",
            )
        basic = (
            "Basic " + base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
            if self.creds
            else None
        )
        if scheme == "basic":
            if sent == basic:
                raise RegistryError(
                    f"{self.ref.registry}: not authorized (the registry refused the credentials)",
                    hint="check the auth file's entry for this registry",
                )
            self._authorization = basic
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.ref.registry}: unknown authentication {challenge!r}")
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or f"repository:{self.ref.repository}:pull,push"
        url = params["realm"] + "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": basic} if basic else {}
        response = self._once("GET", url, headers, None)
        if response.status != 200:
            raise self._refused("GET", url, response)
        try:
            data = json.loads(response.read(MANIFEST_LIMIT))
            token = data.get("token") or data["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(
                f"{self.ref.registry}: its token service answered no token"
            ) from None
        self._authorization = f"Bearer {token}"

    # -- the spec's calls -------------------------------------------------------------------
    def ping(self) -> None:
        url = f"{self.scheme}://{self.ref.registry}/v2/"
        self.request("GET", url).read(MANIFEST_LIMIT)

    def has_blob(self, digest: str) -> bool:
        response = self.request("HEAD", self.url(f"blobs/{digest}"), ok=(200, 404))
        response.close()
        return response.status == 200

    def push_blob(
        self, path: str, digest: str, size: int, progress: Progress | None = None
    ) -> None:
        """Upload a file as one blob (a monolithic PUT after POST, the spec's simplest way)."""
        start = self.request("POST", self.url("blobs/uploads/"), ok=(202,), body=b"")
        start.read(MANIFEST_LIMIT)
        location = start.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.ref.registry}: no upload location given")
        url = urllib.parse.urljoin(self.url("blobs/uploads/"), location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        with open(path, "rb") as f:
            body = _Reader(f, progress)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            self.request("PUT", url, headers=headers, body=body, ok=(201,), rewind=0).read(
                MANIFEST_LIMIT
            )

    def push_bytes(self, data: bytes, digest: str) -> None:
        start = self.request("POST", self.url("blobs/uploads/"), ok=(202,), body=b"")
        start.read(MANIFEST_LIMIT)
        location = start.headers.get("Location") or ""
        url = urllib.parse.urljoin(self.url("blobs/uploads/"), location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        self.request("PUT", url, headers=headers, body=data, ok=(201,)).read(MANIFEST_LIMIT)

    def fetch_blob(
        self, digest: str, size: int, out: IO[bytes], progress: Progress | None = None
    ) -> None:
        """Write the blob to `out`, refusing more than `size` bytes or another digest."""
        response = self.request("GET", self.url(f"blobs/{digest}"))
        sha = hashlib.sha256()
        got = 0
        try:
            while chunk := response.raw.read(CHUNK):
                got += len(chunk)
                if got > size:
                    raise RegistryError(
                        f"blob {digest[:19]} is larger than its manifest says ({size} bytes):"
                        " refused"
                    )
                sha.update(chunk)
                out.write(chunk)
                if progress:
                    progress(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(
                f"{self.ref.registry}: the download of {digest[:19]} broke: {e}"
            ) from None
        finally:
            response.close()
        if got != size or f"sha256:{sha.hexdigest()}" != digest:
            raise RegistryError(
                f"blob {digest[:19]} does not match its digest (tampered or truncated): refused,"
                " nothing written",
            )

    def fetch_small_blob(self, digest: str, size: int, limit: int = MANIFEST_LIMIT) -> bytes:
        if size > limit:
            raise RegistryError(f"blob {digest[:19]} is {size} bytes, more than {limit}: refused")
        import io

        out = io.BytesIO()
        self.fetch_blob(digest, size, out)
        return out.getvalue()

    def fetch_manifest(self, reference: str) -> tuple[bytes, str]:
        """The manifest's bytes and digest (checked when `reference` is a digest)."""
        response = self.request(
            "GET",
            self.url(f"manifests/{reference}"),
            headers={"Accept": f"{MANIFEST}, {INDEX}"},
            ok=(200, 404),
        )
        if response.status == 404:
            response.read(MANIFEST_LIMIT)
            raise RegistryError(
                f"{self.ref.registry}/{self.ref.repository}:{reference}: no such artifact",
                hint="check the tag; `ashctl push` puts one there",
            )
        data = response.read(MANIFEST_LIMIT)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"the manifest does not match {reference[:19]}: refused")
        return data, digest

    def has_manifest(self, reference: str) -> bool:
        response = self.request(
            "HEAD", self.url(f"manifests/{reference}"), headers={"Accept": MANIFEST}, ok=(200, 404)
        )
        response.close()
        return response.status == 200

    def push_manifest(self, reference: str, data: bytes) -> str:
        headers = {"Content-Type": MANIFEST}
        self.request(
            "PUT", self.url(f"manifests/{reference}"), headers=headers, body=data, ok=(201,)
        ).read(MANIFEST_LIMIT)
        return "sha256:" + hashlib.sha256(data).hexdigest()


class _Reader:
    """A file body that reports its progress (http.client reads it in blocks)."""

    def __init__(self, f: IO[bytes], progress: Progress | None) -> None:
        self.f, self.progress = f, progress

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size if size > 0 else CHUNK)
        if data and self.progress:
            self.progress(len(data))
        return data

    def seek(self, offset: int) -> None:
        self.f.seek(offset)


def progress_line(label: str, total: int) -> Progress | None:
    """A progress line on stderr when it is a terminal: `label  12.3 / 45.6 MiB`."""
    if not sys.stderr.isatty():
        return None
    done = [0]

    def report(n: int) -> None:
        done[0] += n
        end = "\n" if done[0] >= total else ""
        sys.stderr.write(f"\r{label}  {done[0] / 2**20:.1f} / {total / 2**20:.1f} MiB{end}")
        sys.stderr.flush()

    return report


def as_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise RegistryError("the registry answered something that is not JSON") from None
