"""The one way to run a command: an argv list, an environment built from scratch."""

from __future__ import annotations

import logging
import shlex
import subprocess

from ashcore.errors import BackendError

log = logging.getLogger(__name__)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    log.debug("+ %s", shlex.join(argv))
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, env={"PATH": PATH, "LC_ALL": "C"}
        )
    except FileNotFoundError as e:
        raise BackendError(f"`{argv[0]}` is not installed", hint="install it and retry") from e
    if check and result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise BackendError(
            f"`{shlex.join(argv)}` failed with exit code {result.returncode}"
            + (f": {lines[-1]}" if lines else "")
        )
    return result
