"""What a hook learns from the manager's process: its command line and its plugin switches."""

from __future__ import annotations

TYPE_CHECKING = False  # no typing import on the hot path
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
    from ashcore.naming import glob_match  # fnmatch's match without its `re`

    disabled = False
    for enable, pattern in _switches(argv):
        if glob_match(pattern, name):
            disabled = not enable
    return disabled


# Options that change how dnf talks or where it looks, not what it does: left out of the
# layer's name (the recorded command keeps them). The value says whether a value follows.
QUIET_OPTIONS = {
    "-y": False,
    "--assumeyes": False,
    "--assume-yes": False,
    "-q": False,
    "--quiet": False,
    "-v": False,
    "--verbose": False,
    "-C": False,
    "--cacheonly": False,
    "--refresh": False,
    "--nogpgcheck": False,
    "--no-gpgchecks": False,
    "--noplugins": False,
    "--no-plugins": False,
    "--use-host-config": False,
    "--setopt": True,
    "--installroot": True,
    "--releasever": True,
    "--color": True,
    "--disableplugin": True,
    "--disable-plugin": True,
    "--enableplugin": True,
    "--enable-plugin": True,
}


def name_words(argv: Sequence[str]) -> list[str]:
    """argv without the options that do not change what the command does."""
    words = [argv[0]] if argv else []
    rest = iter(argv[1:])
    for word in rest:
        option, has_value, _ = word.partition("=")
        if option in QUIET_OPTIONS:
            if QUIET_OPTIONS[option] and not has_value:
                next(rest, None)
            continue
        words.append(word)
    return words


def layer_name(argv: Sequence[str]) -> str:
    """The layer's name: `dnf install nginx` for `/usr/bin/dnf install -y nginx`."""
    from ashcore.naming import auto_name

    return auto_name(tuple(name_words(argv)))
