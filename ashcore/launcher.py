"""What `ashctl setup` fills into the hook files it writes, so that they need no guess.

Hook files are shipped as templates with two marks:
- `@ASH_STORE@`: the store's path in the root (`store` in /etc/ash/ash.toml, `/.ash` unless
  set), which the post hooks hand to ash-commit;
- `@ASH_PYTHONPATH@`: the folder the ashcore package is installed in, as seen in the root
  (a site-packages install, a venv), which the launchers put first on Python's path; empty
  when it lies outside the root (`ashctl --root` from a host install), where the launchers
  fall back to the distribution's folders and then to `site`.
"""

from __future__ import annotations

import os


def fill(template: bytes, root: str) -> bytes:
    """The template with the root's store and the package's folder filled in."""
    from ashcore.config import load_config

    store = load_config(root).store.rstrip("/") or "/"
    return template.replace(b"@ASH_STORE@", store.encode()).replace(
        b"@ASH_PYTHONPATH@", package_folder(root).encode()
    )


def package_folder(root: str) -> str:
    """Where `ashcore` is installed, as a path inside `root` ('' when outside it)."""
    import ashcore

    folder = os.path.dirname(os.path.dirname(os.path.realpath(ashcore.__file__)))
    real_root = os.path.realpath(root)
    if real_root == "/":
        return folder
    if folder.startswith(real_root + "/"):
        return folder[len(real_root) :]
    return ""
