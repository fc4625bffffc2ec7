"""pacman's command line, as the hooks see it, and the layer name made from it.

alpm forks and chroots to run a hook, so the hook's parent is the pacman process itself and
its argv is /proc/<ppid>/cmdline (readable when the root has /proc mounted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ashcore.naming import auto_name

FALLBACK = ("pacman",)

# Options that change how pacman talks, not what it does: left out of the layer's name
# (the recorded command keeps them). The value says whether the option takes an argument.
QUIET_OPTIONS = {
    "--noconfirm": False,
    "--confirm": False,
    "--noprogressbar": False,
    "--color": True,
    "--debug": False,
    "--verbose": False,
    "--disable-download-timeout": False,
}


def parse_cmdline(raw: bytes) -> tuple[str, ...]:
    """argv from the bytes of /proc/<pid>/cmdline (NUL-separated, NUL-terminated)."""
    words = raw.split(b"\0")
    if words and words[-1] == b"":
        words.pop()
    return tuple(w.decode("utf-8", "surrogateescape") for w in words) or FALLBACK


def command_of(pid: int) -> tuple[str, ...]:
    """The argv of process `pid`; ("pacman",) when it cannot be read (no /proc in the root)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return parse_cmdline(f.read())
    except OSError:
        return FALLBACK


def name_words(argv: Sequence[str]) -> tuple[str, ...]:
    """argv without the options that only change pacman's manners (see QUIET_OPTIONS)."""
    kept: list[str] = []
    words = iter(argv)
    for word in words:
        option, eq, _ = word.partition("=")
        if word == "--":
            kept.append(word)
            kept.extend(words)
            break
        if option in QUIET_OPTIONS:
            if QUIET_OPTIONS[option] and not eq:
                next(words, None)
            continue
        kept.append(word)
    return tuple(kept)


def layer_name(argv: Sequence[str]) -> str:
    """The layer's name: `pacman -S vim` for `/usr/bin/pacman -S --noconfirm vim`."""
    return auto_name(name_words(argv))


def read_targets(lines: Iterable[str]) -> list[str]:
    """The package names alpm writes to a NeedsTargets hook's stdin, one a line."""
    return [line.strip() for line in lines if line.strip()]
