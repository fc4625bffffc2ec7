"""What a hook learns from the manager's process: its command line and its plugin switches."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

PLUGIN_NAME = "ashlayers"
"""The name `--disable-plugin` / `--disableplugin` matches, and dnf4's plugin name."""


def read_cmdline(pid: int, proc: str = "/proc") -> list[str]:
    """The argv of a process (empty if it is gone)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [word.decode("utf-8", "surrogateescape") for word in raw.split(b"\0")[:-1]]


def _switches(argv: Sequence[str]) -> list[tuple[bool, str]]:
    """(enable?, pattern) of every --enable-plugin / --disable-plugin, in order."""
    found: list[tuple[bool, str]] = []
    words = iter(argv[1:])
    for word in words:
        if word == "--":
            break
        for option, enable in (
            ("--disable-plugin", False),
            ("--disableplugin", False),
            ("--enable-plugin", True),
            ("--enableplugin", True),
        ):
            if word == option:
                value = next(words, "")
            elif word.startswith(option + "="):
                value = word[len(option) + 1 :]
            else:
                continue
            found += [(enable, p.strip()) for p in value.split(",") if p.strip()]
    return found


def plugin_disabled(argv: Sequence[str], name: str = PLUGIN_NAME) -> bool:
    """Whether the command line disables plugin `name` (globs; the last matching switch wins)."""
    disabled = False
    for enable, pattern in _switches(argv):
        if fnmatch.fnmatchcase(name, pattern):
            disabled = not enable
    return disabled
