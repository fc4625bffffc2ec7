"""Signatures of pushed lines: OpenPGP, detached, made with gpg and checked with gpgv.

Why OpenPGP: it is how Debian already trusts what it installs (apt checks every repository
with gpgv against a keyring named by `signed-by`), gpgv is on every Debian system, keys are
made, kept offline and revoked with tools admins know, and a keyring file is the whole trust
configuration. (minisign/signify are simpler but are not installed by default and have no
revocation or expiry.)

What is signed is one line of text naming the artifact's manifest digest,
`ashlayers line sha256:<hex>`; the manifest names every blob by digest, and every blob is
checked against its digest on arrival, so the signature covers the whole line. The signature
travels as an artifact of its own under the tag `sha256-<hex>.sig` (the tag scheme cosign
uses; the registry needs no referrers API).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile

from ashcore.errors import AshError, UsageError
from ashcore.fleet import artifact
from ashcore.fleet.oci import Client, RegistryError

SIGNATURE_LIMIT = 64 << 10  # bytes


class TrustError(AshError):
    """A line's signature is missing, wrong, or by a key that is not trusted."""


def payload(digest: str) -> bytes:
    return f"ashlayers line {digest}\n".encode()


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def sign(client: Client, digest: str, key: str, work: str) -> None:
    """Sign the manifest `digest` with the gpg secret key `key` and push the signature."""
    message = os.path.join(work, "payload")
    with open(message, "wb") as f:
        f.write(payload(digest))
    try:
        result = subprocess.run(
            [
                "gpg",
                "--batch",
                "--yes",
                "--local-user",
                key,
                "--detach-sign",
                "--output",
                "-",
                message,
            ],
            capture_output=True,
        )
    except FileNotFoundError:
        raise UsageError("signing needs gpg", hint="install gnupg") from None
    if result.returncode != 0 or not result.stdout:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(
            f"gpg could not sign with key {key}: {said[-1] if said else 'no message'}",
            hint="check `gpg --list-secret-keys` (GNUPGHOME)",
        )
    signature = result.stdout
    sig_digest = artifact.digest_of(signature)
    if not client.has_blob(sig_digest):
        client.push_bytes(signature, sig_digest)
    if not client.has_blob(artifact.EMPTY_DIGEST):
        client.push_bytes(artifact.EMPTY_DATA, artifact.EMPTY_DIGEST)
    manifest = {
        "schemaVersion": 2,
        "mediaType": artifact.MANIFEST_TYPE,
        "artifactType": artifact.SIGNATURE_TYPE,
        "config": {"mediaType": artifact.EMPTY, "digest": artifact.EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": artifact.SIGNATURE, "digest": sig_digest, "size": len(signature)}],
        "annotations": {"io.ashlayers.signed": digest},
    }
    data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    client.push_manifest(signature_tag(digest), data)


def keyring(paths: tuple[str, ...], work: str) -> str:
    """One binary keyring of the trusted keys (ASCII-armored ones are decoded)."""
    out = os.path.join(work, "trusted.gpg")
    with open(out, "wb") as f:
        for path in paths:
            try:
                with open(path, "rb") as k:
                    data = k.read()
            except OSError as e:
                raise UsageError(f"cannot read the trusted key {path}: {e.strerror}") from None
            f.write(_dearmor(data, path) if data.lstrip().startswith(b"-----BEGIN") else data)
    return out


def _dearmor(data: bytes, path: str) -> bytes:
    lines = data.decode("ascii", "replace").splitlines()
    body, inside, past_headers = [], False, False
    for line in lines:
        if line.startswith("-----BEGIN PGP PUBLIC KEY BLOCK"):
            inside, past_headers = True, False
            continue
        if line.startswith("-----END"):
            inside = False
            continue
        if inside and not past_headers:
            past_headers = line.strip() == ""
            if ":" not in line and line.strip():  # no header lines at all
                past_headers = True
            else:
                continue
        if inside and not line.startswith("="):
            body.append(line.strip())
    try:
        return base64.b64decode("".join(body))
    except ValueError:
        raise UsageError(f"the trusted key {path} is not an OpenPGP key") from None


def verify(client: Client, digest: str, keys: tuple[str, ...]) -> str:
    """Check the signature of manifest `digest` against the trusted `keys`; returns gpgv's
    line naming the key. Raises TrustError on anything else."""
    try:
        data, _ = client.fetch_manifest(signature_tag(digest))
    except RegistryError as e:
        if "no such artifact" in str(e):
            raise TrustError(
                f"the line {digest[:19]} is not signed, and this store trusts only signed lines",
                hint="push it with --sign KEY, or drop the trusted keys (--trusted-key, [fleet])",
            ) from None
        raise
    try:
        manifest = json.loads(data)
        layer = manifest["layers"][0]
        sig_digest, size = layer["digest"], int(layer["size"])
        assert manifest.get("artifactType") == artifact.SIGNATURE_TYPE
    except (ValueError, KeyError, IndexError, TypeError, AssertionError):
        raise TrustError(f"the signature of {digest[:19]} is malformed") from None
    signature = client.fetch_small_blob(sig_digest, size, SIGNATURE_LIMIT)
    with tempfile.TemporaryDirectory(prefix="ashlayers-verify.") as work:
        ring = keyring(keys, work)
        sig, message = os.path.join(work, "sig"), os.path.join(work, "payload")
        with open(sig, "wb") as f:
            f.write(signature)
        with open(message, "wb") as f:
            f.write(payload(digest))
        try:
            result = subprocess.run(
                ["gpgv", "--status-fd", "1", "--keyring", ring, sig, message],
                capture_output=True,
                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "GNUPGHOME": work},
            )
        except FileNotFoundError:
            raise UsageError("checking signatures needs gpgv", hint="install gpgv") from None
    status = result.stdout.decode(errors="replace")
    good = [line for line in status.splitlines() if line.startswith("[GNUPG:] VALIDSIG")]
    if result.returncode != 0 or not good:
        why = "a key that is not trusted" if "NO_PUBKEY" in status else "a bad signature"
        raise TrustError(
            f"the line {digest[:19]} is signed with {why}: refused, nothing written",
            hint="check the trusted keys (--trusted-key, [fleet] trusted_keys)",
        )
    return good[0].split()[2]
