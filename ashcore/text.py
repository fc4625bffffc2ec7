"""Untrusted text made safe to store and to show: file names, command lines, layer names.

File names are bytes: one that is not UTF-8 reaches Python with surrogates, which SQLite
cannot store; and a name can hold what a terminal acts on (escape sequences, a newline that
draws a fake line). `escaped` writes every such character as a visible escape, as `ls -b`
does, so that what is stored and printed is one readable line. A backslash is left as it is,
so that escaping twice (stored escaped, printed escaped) changes nothing.
"""

from __future__ import annotations

# Characters that are printable to Python but change how a line reads: bidi controls,
# line and paragraph separators, zero-width characters.
INVISIBLE = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\ufeff"
)


def escaped(text: str) -> str:
    """`text` with controls, undecodable bytes and invisible characters as escapes."""
    if text.isprintable() and not INVISIBLE.intersection(text):
        return text
    out = []
    for c in text:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif c in INVISIBLE or not c.isprintable() or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(c)
    return "".join(out)


def shortened(text: str, width: int = 200) -> str:
    """`text` cut to about `width` characters for a line on a terminal, its middle left out
    (a path may be longer than PATH_MAX: its start and its end say where it is)."""
    if len(text) <= width:
        return text
    keep = (width - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


def refused_character(text: str) -> str | None:
    """The first character a layer name may not hold, escaped; None when there is none."""
    for c in text:
        code = ord(c)
        if (
            code < 0x20
            or 0x7F <= code < 0xA0
            or 0xD800 <= code <= 0xDFFF
            or c in INVISIBLE
            or not c.isprintable()
        ):
            return escaped(c)
    return None


def parse_size(text: str) -> int:
    """ "20G", "500M", "1.5T", "4096" (binary units, an optional "B" or "iB") -> bytes;
    ValueError on anything else."""
    import re

    found = re.fullmatch(r"(\d{1,15}(?:\.\d{1,6})?) ?([KMGT]?)(?:I?B)?", text.strip(), re.I | re.A)
    if found is None:
        raise ValueError(f"not a size: {text!r} (e.g. 20G, 500M)")
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(float(found.group(1)) * units[found.group(2).upper()])
