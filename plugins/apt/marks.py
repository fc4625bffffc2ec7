"""What a change to dpkg's and apt's state alone did: holds and other selections (dpkg's
status, as `apt-mark hold` and `dpkg --set-selections` write it) and automatic marks (apt's
extended_states, as `apt-mark auto` writes it), said in a few words for a drift layer's name.

Both files are read as plain text (stanzas of `Field: value` lines): no binding, a few
milliseconds for a status file of thousands of packages.
"""

from __future__ import annotations

import os

STATUS = "var/lib/dpkg/status"
EXTENDED_STATES = "var/lib/apt/extended_states"
# What dpkg and apt-mark write beside the files they rewrite: explained with them.
EXPLAINED = frozenset(
    {
        STATUS,
        "var/lib/dpkg/status-old",
        "var/lib/dpkg/updates",
        EXTENDED_STATES,
    }
)
SHOWN = 4  # names per verb; the rest are counted


def stanzas(path: str) -> list[dict[str, str]]:
    """The stanzas of a deb822 file (continuation lines left out); none when it is absent."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    found = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t", "#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "Package" in fields:
            found.append(fields)
    return found


def _key(fields: dict[str, str], native: str) -> str:
    arch = fields.get("Architecture", "")
    name = fields["Package"]
    return name if arch in ("", "all", native) else f"{name}:{arch}"


def _native(entries: list[dict[str, str]]) -> str:
    return next((e.get("Architecture", "") for e in entries if e["Package"] == "dpkg"), "")


def selections(root: str) -> dict[str, tuple[str, str, str]]:
    """package -> (its selection, its state, its version), from dpkg's status file."""
    entries = stanzas(os.path.join(root, STATUS))
    native = _native(entries)
    found = {}
    for e in entries:
        words = e.get("Status", "").split()
        if len(words) == 3:
            found[_key(e, native)] = (words[0], words[2], e.get("Version", ""))
    return found


def automatic(root: str) -> set[str]:
    """The packages apt marks as installed automatically (extended_states)."""
    entries = stanzas(os.path.join(root, EXTENDED_STATES))
    native = _native(stanzas(os.path.join(root, STATUS)))
    return {_key(e, native) for e in entries if e.get("Auto-Installed") == "1"}


def describe(paths: list[str], before: str, after: str) -> str | None:
    """`hold zeta-core`, `unhold a b`, `select x deinstall`, `mark auto y`: what changed in
    the selections and marks from `before` to `after`; None when `paths` holds a file this
    cannot explain, a package itself changed (its state or version), or nothing did."""
    if not paths or any(p not in EXPLAINED for p in paths):
        return None
    said: dict[str, list[str]] = {}
    old, new = selections(before), selections(after)
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new or old[name][1:] != new[name][1:]:
            return None  # installed, removed, configured: a package change, not a mark
        was, now = old[name][0], new[name][0]
        if was == now:
            continue
        if now == "hold":
            verb = "hold"
        elif was == "hold" and now == "install":
            verb = "unhold"
        else:
            verb = f"select {now}"
        said.setdefault(verb, []).append(name)
    if EXTENDED_STATES in paths:
        auto_before, auto_after = automatic(before), automatic(after)
        for name in sorted(auto_after - auto_before):
            said.setdefault("mark auto", []).append(name)
        for name in sorted(auto_before - auto_after):
            if name in new:  # a removed package leaves the file too: no mark
                said.setdefault("mark manual", []).append(name)
    if not said:
        return None
    parts = []
    for verb, names in said.items():
        more = f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else ""
        parts.append(f"{verb} {' '.join(names[:SHOWN])}{more}")
    return ", ".join(parts)
