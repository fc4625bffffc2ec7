"""The one way the rig runs a host command, and the one way it fails."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RigError(Exception):
    """The rig could not be built, attached or cleaned up; the message says why."""


def describe(argv: Sequence[str], proc: subprocess.CompletedProcess[str]) -> str:
    """One readable block: the command, its exit code and the tail of its output."""
    lines = [f"$ {shlex.join(argv)}", f"exit code {proc.returncode}"]
    for label, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if text:
            tail = "\n".join(text.rstrip().splitlines()[-40:])
            lines.append(f"--- {label} (last lines) ---\n{tail}")
    return "\n".join(lines)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run argv on the host with an explicit environment; raise RigError when it fails."""
    full_env = {"PATH": HOST_PATH, "LANG": "C.UTF-8", **(env or {})}
    log.debug("run %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            list(argv),
            env=full_env,
            input=input,
            timeout=timeout,
            text=True,
            capture_output=capture,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RigError(f"$ {shlex.join(argv)}\ntimed out after {timeout} s") from exc
    except OSError as exc:
        raise RigError(f"$ {shlex.join(argv)}\ncould not start: {exc}") from exc
    if check and proc.returncode != 0:
        raise RigError(describe(argv, proc))
    return proc
