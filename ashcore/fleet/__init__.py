"""Fleet: a line of layers travels between machines as one OCI artifact in a registry.

- `reference` — what `host:port/repo:tag` and `...@sha256:...` mean;
- `oci` — a registry client (the distribution spec's blob and manifest calls), with the
  containers conventions for credentials (containers-auth.json) and trust (certs.d);
- `artifact` — the line's artifact: its manifest, the line's index (every layer's record and
  stream), checked strictly as the untrusted input it is;
- `signing` — OpenPGP detached signatures (gpg to sign, gpgv to verify, as apt does);
- `push` and `pull` — the two commands; `receive` — a stream becomes a layer, confined and
  crash-safe.

Nothing here is on a hook's path.
"""
