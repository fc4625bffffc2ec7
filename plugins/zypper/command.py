"""zypper's command line, as its commit plugin sees it, and the layer name made from it.

libzypp starts the plugin as zypper's child: its argv is /proc/<ppid>/cmdline.
"""

from __future__ import annotations

from collections.abc import Sequence

from ashcore.naming import auto_name

FALLBACK = ("zypper",)

# Options that change how zypper talks, not what it does: left out of the layer's name.
QUIET = frozenset(
    {"-n", "--non-interactive", "-q", "--quiet", "-v", "--verbose", "-y", "--no-confirm"}
)


def command_of(pid: int) -> tuple[str, ...]:
    """The argv of process `pid`; ("zypper",) when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return FALLBACK
    words = [w.decode("utf-8", "surrogateescape") for w in raw.split(b"\0") if w]
    return tuple(words) or FALLBACK


def layer_name(argv: Sequence[str]) -> str:
    """`zypper install htop` for `/usr/bin/zypper --non-interactive install -y htop`."""
    return auto_name(tuple(w for w in argv if w not in QUIET))
