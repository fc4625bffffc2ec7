"""Names: a layer's name from its command line or the user's, and the globs that match
package names (skip_packages)."""

from __future__ import annotations

import os

from ashcore.errors import UsageError
from ashcore.log import logger
from ashcore.text import escaped, refused_character

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


log = logger(__name__)


MAX_NAME = 200


# -- names -----------------------------------------------------------------------------------
def check_name(name: str) -> str:
    """A user's layer name: one line, printable, not an id, at most MAX_NAME characters."""
    if not name.strip():
        raise UsageError("the layer name is empty", hint="give a name, or unset ASH_NAME")
    bad = refused_character(name)
    if bad is not None:
        raise UsageError(
            f"the layer name holds {bad}: a newline, control, invisible or undecodable character",
            hint="use one line of plain text",
        )
    if name.startswith("-"):
        raise UsageError("a layer name cannot start with '-'", hint="it would read as an option")
    if len(name) > MAX_NAME:
        raise UsageError(
            f"the layer name is {len(name)} characters long", hint=f"use at most {MAX_NAME}"
        )
    if name.isdigit():
        raise UsageError("a layer name cannot be a number", hint="numbers are layer ids")
    return name


NAMED = 3  # paths a drift layer's name shows


def drift_name(paths: list[str], said: Sequence[str] = (), *, more: bool = False) -> str:
    """A drift layer's name: what the managers said of their state (`said`), then the paths
    (the first NAMED of them) they did not explain; `more`, or a path past NAMED, says that
    there are more."""
    shown = ", ".join([*said, *(escaped(p) for p in paths[:NAMED])])
    shown += " (and more)" if more or len(paths) > NAMED else ""
    name = f"drift: {shown}"
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "\u2026"


def auto_name(argv: tuple[str, ...]) -> str:
    words = [os.path.basename(argv[0]), *argv[1:]] if argv else ["?"]
    name = escaped(shell_join(words))
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "\u2026"


def auto_command(argv: tuple[str, ...]) -> str:
    return escaped(shell_join(argv))


SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def shell_join(words: tuple[str, ...] | list[str]) -> str:
    """`shlex.join`, without `shlex`: it imports `re`, 2 ms of every hook's time."""
    return " ".join(
        w if w and all(c in SHELL_SAFE for c in w) else "'" + w.replace("'", "'\"'\"'") + "'"
        for w in words
    )


def matches_any(pattern: str, names: Sequence[str]) -> bool:
    return any(glob_match(pattern, n) for n in names)


def glob_match(pattern: str, name: str) -> bool:
    """`fnmatch.fnmatchcase`; a pattern whose only wildcard is `*` (the default noise's
    `*/__pycache__`) without it: fnmatch compiles a regular expression, and `re` costs a
    hook 2 ms to import."""
    if "?" in pattern or "[" in pattern:
        from fnmatch import fnmatchcase

        return fnmatchcase(name, pattern)
    if "*" not in pattern:
        return name == pattern
    first, *middle, last = pattern.split("*")
    if len(name) < len(first) + len(last) or not name.startswith(first):
        return False
    if not name.endswith(last):
        return False
    at, end = len(first), len(name) - len(last)
    for part in middle:
        found = name.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True
