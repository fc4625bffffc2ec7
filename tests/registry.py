"""A real OCI registry for the tests: Debian's `docker-registry` (the CNCF distribution server).

`running_registry(workdir)` builds everything below `workdir` and removes what it added to
the host when it exits, also on a failure or Ctrl-C:

- a test CA and a server certificate for the registry's address (P-256, made by `openssl`
  from a config file of its own, so the host's openssl.cnf plays no part);
- an htpasswd file (bcrypt, made by `htpasswd -B`) for one user with a random password, a
  containers-auth.json for that user, and a certs.d-style folder holding only `ca.crt`;
- three network namespaces named after this process (`ashreg-<pid>-<n>-<random>-reg`,
  `-snd`, `-rcv`): the registry's, a sender's and a receiver's. A bridge in the registry's
  namespace joins them by veth pairs created inside the namespaces, so no interface and no
  address ever exists in the host's namespace, and concurrent runs can use the same
  addresses (registry 10.237.0.1, sender .2, receiver .3, in a /24);
- a config.yml for `docker-registry serve`: filesystem storage below `workdir`, TLS, htpasswd
  auth, deletes enabled, no blob descriptor cache (a test that changes a blob on disk sees
  the registry serve the change);
- the registry process in its namespace, from a clean environment (the server reads any
  `REGISTRY_*` variable as a setting) and with a parent-death signal, so that even a
  SIGKILLed test leaves no server behind. The context is ready once `GET /v2/` answers 401
  from the receiver's namespace.

Clients run in a namespace through `Registry.run` (`nsenter --net`, so they keep the host's
mount namespace and see the test's btrfs mounts), or in this process inside
`Registry.entered(ns)`, which moves the calling thread to that namespace for the block:
sockets opened there stay in it.

The server gets SIGKILL when the thread that started it ends (`setpriv --pdeathsig`): start
it from the test's main thread. Namespaces that a killed test run left behind (its pid no
longer alive) are deleted by the next run. The client files (CA, cert dir, auth file) live
below `workdir`: a client that runs chrooted into a root needs `workdir` inside that root.
"""

from __future__ import annotations

import base64
import ctypes
import http.client
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ADDRESS = "10.237.0.1"
SENDER_ADDRESS = "10.237.0.2"
RECEIVER_ADDRESS = "10.237.0.3"
PREFIX = 24
PORT = 5000
NS_PREFIX = "ashreg-"
# How long the server may take to answer its first request (it takes ~0.1 s).
START_TIMEOUT = 10.0

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_serial = itertools.count(1)


class RegistryError(RuntimeError):
    """The rig could not be built, or the server did not start."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextmanager
def entered(ns: str) -> Iterator[None]:
    """The calling thread in network namespace `ns` for the block (only this thread moves)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def _run(argv: Sequence[str], input: str | None = None) -> str:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RegistryError(f"{' '.join(argv)} -> {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def _ip_batch(ns: str | None, lines: Sequence[str]) -> None:
    _run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], input="\n".join(lines) + "\n")


def namespaces() -> list[str]:
    """The names of the host's network namespaces (`ip netns list`)."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]


def sweep_orphans() -> list[str]:
    """Delete the rig namespaces whose owning process is gone (a SIGKILLed test run)."""
    removed = []
    for name in namespaces():
        found = re.fullmatch(rf"{NS_PREFIX}(\d+)-.*", name)
        if found and not Path(f"/proc/{found[1]}").exists():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
            removed.append(name)
    return removed


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:{address}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_certificates(folder: Path, address: str) -> tuple[Path, Path, Path]:
    """A CA (`ca.crt`) and a certificate and key for a server at `address`, valid two days.
    The extensions are the ones Python's VERIFY_X509_STRICT (on by default from 3.13) asks."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG.format(address=address))
    ca_key, ca, key, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.crt"))
    common = ["openssl", "req", "-x509", "-config", str(config), "-days", "2", "-nodes"]
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    _run([*common, *newkey, "-keyout", str(ca_key), "-out", str(ca),
          "-subj", "/CN=ashlayers test CA", "-extensions", "ca"])  # fmt: skip
    _run([*common, *newkey, "-keyout", str(key), "-out", str(cert),
          "-subj", f"/CN={address}", "-extensions", "server",
          "-CA", str(ca), "-CAkey", str(ca_key)])  # fmt: skip
    return ca, cert, key


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


@dataclass
class _Server:
    """The registry process: its command line, its log, and the process once started."""

    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None


@dataclass(frozen=True)
class Registry:
    """A running registry and the files a client needs to reach it."""

    host: str  # "10.237.0.1:5000", as a reference or an auth file names it
    scheme: str  # "https", or "http" for the plain variant
    ca: Path  # the test CA's certificate (PEM)
    cert_dir: Path  # a certs.d-style folder holding only ca.crt (skopeo's --cert-dir)
    auth_file: Path  # containers-auth.json: {"auths": {host: {"auth": base64(user:password)}}}
    user: str
    password: str
    storage: Path  # the filesystem driver's root directory
    config: Path  # the server's config.yml
    log: Path  # the server's output
    registry_ns: str
    sender_ns: str
    receiver_ns: str
    _server: _Server = field(repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def authorization(self) -> str:
        """The value of an `Authorization` header for the user."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        process = self._server.process
        return process.pid if process is not None and process.poll() is None else None

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps the blob `digest` ("sha256:<hex>")."""
        algorithm, hex_digest = digest.split(":", 1)
        return (
            self.storage / "docker/registry/v2/blobs" / algorithm / hex_digest[:2] / hex_digest
            / "data"
        )  # fmt: skip

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA and nothing else."""
        return ssl.create_default_context(cafile=str(self.ca))

    def connection(self, timeout: float = 5.0) -> http.client.HTTPConnection:
        """An HTTP(S) connection to the registry; it connects on its first request, so make
        that request inside `entered(ns)`."""
        host, port = self.host.rsplit(":", 1)
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                host, int(port), context=self.ssl_context(), timeout=timeout
            )
        return http.client.HTTPConnection(host, int(port), timeout=timeout)

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cwd: Path | None = None,
        timeout: float | None = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in network namespace `ns` (`nsenter --net`: the host's mounts stay in
        view), with this process's environment unless `env` is given; output captured."""
        full = ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]
        result = subprocess.run(
            full,
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            input=input,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} in {ns} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self) -> None:
        """Start the server (again) and wait until it answers; a no-op while it runs."""
        if self.pid is not None:
            return
        server = self._server
        if server.log_file is not None:
            server.log_file.close()
        server.log_file = open(server.log, "ab")  # noqa: SIM115 (closed by stop)
        # The server reads REGISTRY_* variables as settings: give it an environment of its own.
        server.process = subprocess.Popen(
            server.argv,
            stdin=subprocess.DEVNULL,
            stdout=server.log_file,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            start_new_session=True,
        )
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); a no-op if it is not running."""
        server = self._server
        process = server.process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            server.process = None
        if server.log_file is not None:
            server.log_file.close()
            server.log_file = None

    def _wait_until_ready(self) -> None:
        expected = 401 if self.password else 200
        deadline = time.monotonic() + START_TIMEOUT
        last: object = None
        while time.monotonic() < deadline:
            process = self._server.process
            if process is None or process.poll() is not None:
                raise RegistryError(f"docker-registry exited at start:\n{self._log_tail()}")
            try:
                with entered(self.receiver_ns):
                    connection = self.connection(timeout=0.5)
                    try:
                        connection.request("GET", "/v2/")
                        status = connection.getresponse().status
                    finally:
                        connection.close()
                if status == expected:
                    return
                last = f"GET /v2/ -> {status}"
            except OSError as e:
                last = e
            time.sleep(0.02)
        self.stop()
        raise RegistryError(f"docker-registry did not answer ({last}):\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"


def _server_config(workdir: Path, *, tls: bool, htpasswd: Path | None) -> dict[str, object]:
    http_section: dict[str, object] = {
        "addr": f"{ADDRESS}:{PORT}",
        # A fixed secret, so an upload begun before stop() can be finished after start().
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls:
        http_section["tls"] = {
            "certificate": str(workdir / "pki/server.crt"),
            "key": str(workdir / "pki/server.key"),
        }
    config: dict[str, object] = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http_section,
        "health": {"storagedriver": {"enabled": False}},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "ashlayers-test", "path": str(htpasswd)}}
    return config


def _build_network(registry_ns: str, clients: Sequence[tuple[str, str, str]]) -> None:
    """Create the namespaces, the bridge in the registry's and a veth pair to each client."""
    _ip_batch(None, [f"netns add {ns}" for ns in (registry_ns, *(c[0] for c in clients))])
    lines = [
        "link set lo up",
        "link add br0 type bridge",
        f"addr add {ADDRESS}/{PREFIX} dev br0",
        "link set br0 up",
    ]
    for ns, _, port in clients:
        lines += [
            f"link add {port} type veth peer name eth0 netns {ns}",
            f"link set {port} master br0 up",
        ]
    _ip_batch(registry_ns, lines)
    for ns, address, _ in clients:
        _ip_batch(
            ns, ["link set lo up", f"addr add {address}/{PREFIX} dev eth0", "link set eth0 up"]
        )


def _delete_namespaces(names: Sequence[str]) -> None:
    for name in names:
        if Path(f"/run/netns/{name}").exists():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


@contextmanager
def running_registry(workdir: Path, *, tls: bool = True, auth: bool = True) -> Iterator[Registry]:
    """A docker-registry serving from `workdir`, reachable from the sender's and receiver's
    namespaces; `tls=False` serves plain HTTP, `auth=False` lets anyone in (then `password`
    is empty). Everything it added to the host is gone when the block exits."""
    for tool in ("docker-registry", "openssl", "htpasswd", "ip", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            raise RegistryError(f"{tool} is missing: run tests/host-deps.sh")
    sweep_orphans()
    workdir.mkdir(parents=True, exist_ok=True)
    host = f"{ADDRESS}:{PORT}"
    ca, _, _ = make_certificates(workdir / "pki", ADDRESS)
    cert_dir = workdir / "certs"
    cert_dir.mkdir(exist_ok=True)
    shutil.copyfile(ca, cert_dir / "ca.crt")

    user, password = "ash", secrets.token_urlsafe(18) if auth else ""
    htpasswd = None
    if auth:
        htpasswd = workdir / "htpasswd"
        line = _run(["htpasswd", "-Bbn", user, password]).strip()
        _write_private(htpasswd, line + "\n")
    auth_file = workdir / "auth.json"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    _write_private(auth_file, json.dumps({"auths": {host: {"auth": token}}}, indent=2) + "\n")

    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    config = workdir / "config.yml"
    # JSON is YAML: no quoting rules to get wrong for paths.
    config.write_text(json.dumps(_server_config(workdir, tls=tls, htpasswd=htpasswd), indent=2))

    stem = f"{NS_PREFIX}{os.getpid()}-{next(_serial)}-{secrets.token_hex(2)}"
    registry_ns, sender_ns, receiver_ns = f"{stem}-reg", f"{stem}-snd", f"{stem}-rcv"
    names = (registry_ns, sender_ns, receiver_ns)
    argv = [
        "nsenter", f"--net=/run/netns/{registry_ns}", "--",
        "setpriv", "--pdeathsig", "KILL", "--",
        "docker-registry", "serve", str(config),
    ]  # fmt: skip
    registry = Registry(
        host=host,
        scheme="https" if tls else "http",
        ca=cert_dir / "ca.crt",
        cert_dir=cert_dir,
        auth_file=auth_file,
        user=user,
        password=password,
        storage=storage,
        config=config,
        log=workdir / "registry.log",
        registry_ns=registry_ns,
        sender_ns=sender_ns,
        receiver_ns=receiver_ns,
        _server=_Server(argv=argv, log=workdir / "registry.log"),
    )
    try:
        _build_network(
            registry_ns,
            [
                (sender_ns, SENDER_ADDRESS, "to-sender"),
                (receiver_ns, RECEIVER_ADDRESS, "to-receiver"),
            ],
        )
        registry.start()
        yield registry
    finally:
        try:
            registry.stop()
        finally:
            _delete_namespaces(names)
