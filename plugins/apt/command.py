"""The command lines the hooks see, the layer names made from them, and the targets.

apt and dpkg run a hook through `sh -c`, sometimes through our own `sh` wrapper too, so the
manager is the nearest ancestor that is not a shell; its argv is /proc/<pid>/cmdline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

SHELLS = frozenset({"sh", "dash", "bash", "busybox", "apt-hook"})

# Options that change how apt or dpkg talk, not what they do: left out of the layer's name
# (the recorded command keeps them). The value says whether the option takes an argument.
APT_QUIET_OPTIONS = {
    "-y": False,
    "--yes": False,
    "--assume-yes": False,
    "-q": False,
    "-qq": False,
    "--quiet": False,
    "-o": True,
    "--option": True,
    "-c": True,
    "--config-file": True,
    "--no-install-recommends": False,
    "--allow-downgrades": False,
    "--allow-remove-essential": False,
    "--allow-change-held-packages": False,
}
DPKG_QUIET_PREFIXES = ("--force-", "--no-force-", "--refuse-", "--status-fd", "--log=")

# dpkg actions whose arguments are .deb files, and those whose arguments are package names.
DPKG_FILE_ACTIONS = frozenset({"-i", "--install", "--unpack", "-A", "--record-avail"})
DPKG_NAME_ACTIONS = frozenset({"-r", "--remove", "-P", "--purge", "--configure"})


def parse_cmdline(raw: bytes) -> tuple[str, ...]:
    """argv from the bytes of /proc/<pid>/cmdline (NUL-separated, NUL-terminated)."""
    words = raw.split(b"\0")
    if words and words[-1] == b"":
        words.pop()
    return tuple(w.decode("utf-8", "surrogateescape") for w in words)


def _stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    return comm, int(raw[raw.rindex(")") + 2 :].split()[1])


def _same_process_image(a: int, b: int) -> bool:
    """Whether `b` is a fork of `a` that did not exec: the same command line and the same
    root (/proc/PID/root compared by inode: its link text reads "/" from inside a chroot)."""
    try:
        with open(f"/proc/{a}/cmdline", "rb") as f:
            line_a = f.read()
        with open(f"/proc/{b}/cmdline", "rb") as f:
            line_b = f.read()
        root_a, root_b = os.stat(f"/proc/{a}/root"), os.stat(f"/proc/{b}/root")
    except OSError:
        return False
    return (
        line_a == line_b
        and bool(line_a)
        and (root_a.st_dev, root_a.st_ino) == (root_b.st_dev, root_b.st_ino)
    )


def find_manager(start: int) -> int:
    """The nearest process from `start` upwards that is not a shell (`start` itself counts).

    apt runs DPkg::Post-Invoke from a fork of itself (which calls system()): a process whose
    parent is the same program image (same command line, same root: a fork that did not
    exec) is that fork, and the manager is the parent. A parent that merely has the same
    name is another program (`python3 -c "subprocess.run(['python3', 'pyapt.py'])"`), and one
    in another root (a host's image builder that ran `chroot R python3 pyapt.py`) is never
    the manager: the layer is named after the python-apt script and owned by it alone.
    """
    pid = start
    while pid > 1:
        found = _stat(pid)
        if found is None:
            return start
        comm, parent = found
        if comm not in SHELLS:
            break
        pid = parent
    else:
        return start
    while True:
        above = _stat(parent)
        if above is None or above[0] != comm or parent <= 1:
            return pid
        if not _same_process_image(parent, pid):
            return pid
        pid, parent = parent, above[1]


def command_of(pid: int, fallback: str) -> tuple[str, ...]:
    """The argv of process `pid`; (fallback,) when it cannot be read (no /proc in the root)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return parse_cmdline(f.read()) or (fallback,)
    except OSError:
        return (fallback,)


def _is_quiet_apt(word: str) -> bool:
    if word.startswith("--quiet="):
        return True
    # Bundled short flags made only of -y and -q (e.g. -qy, -yqq).
    return len(word) > 1 and word[0] == "-" and word[1] != "-" and set(word[1:]) <= {"y", "q"}


INTERPRETERS = ("python", "perl", "ruby", "bash", "sh")


# A packaged script run from these is a command of its own (unattended-upgrade): its
# interpreter is no part of its name. A local one keeps it (`python3 pyapt-install`).
COMMAND_FOLDERS = frozenset({"/usr/bin", "/usr/sbin", "/bin", "/sbin"})


def name_words(argv: Sequence[str]) -> tuple[str, ...]:
    """argv without the options that only change apt's or dpkg's manners."""
    if not argv:
        return ()
    first = os.path.basename(argv[0])
    if first.startswith(INTERPRETERS):  # a script that drives libapt (python-apt, perl)
        rest = list(argv[1:])
        if rest[:1] == ["-c"] or rest[:1] == ["-e"]:
            return (first, rest[0])  # the code itself is no name
        if rest and not rest[0].startswith("-"):
            if os.path.dirname(rest[0]) in COMMAND_FOLDERS:  # a command (unattended-upgrade)
                return (os.path.basename(rest[0]), *rest[1:])
            rest[0] = os.path.basename(rest[0])
        return (first, *rest)
    is_dpkg = first == "dpkg"
    kept = [os.path.basename(argv[0])]
    words = iter(argv[1:])
    for word in words:
        if word == "--":
            kept.append(word)
            kept.extend(words)
            break
        if is_dpkg:
            if word.startswith(DPKG_QUIET_PREFIXES):
                continue
        elif word in APT_QUIET_OPTIONS:
            if APT_QUIET_OPTIONS[word]:
                next(words, None)
            continue
        elif _is_quiet_apt(word) or word.startswith(("-o", "--option=", "--config-file=")):
            continue
        kept.append(word)
    return tuple(kept)


def layer_name(argv: Sequence[str], limit: int = 200) -> str:
    """`apt-get install -y htop` -> "apt-get install htop" (at most `limit` characters)."""
    name = " ".join(name_words(argv)) or "apt"
    name = "".join(c if c.isprintable() else " " for c in name)
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def deb_package(path: str) -> str:
    """The package name of a .deb by Debian's file naming (name_version_arch.deb)."""
    return os.path.basename(path).split("_", 1)[0]


def dpkg_targets(argv: Sequence[str]) -> list[str]:
    """Package names a dpkg command line acts on, as far as its words tell."""
    targets: list[str] = []
    action: str | None = None
    for word in argv[1:]:
        if word.startswith("-"):
            option = word.partition("=")[0]
            if option in DPKG_FILE_ACTIONS or option in DPKG_NAME_ACTIONS:
                action = option
            continue
        if action in DPKG_FILE_ACTIONS and word.endswith(".deb"):
            targets.append(deb_package(word))
        elif action in DPKG_NAME_ACTIONS:
            targets.append(word.split(":", 1)[0])
    return targets


def pre_install_targets(lines: Iterable[str]) -> list[str]:
    """Package names from apt's Pre-Install-Pkgs input (protocol VERSION 2 or 3).

    The input: "VERSION n", the config dump, a blank line, then one line per action:
    v3 `name oldver oldarch oldma dir newver newarch newma action`, v2 `name oldver dir newver
    action`. A version-1 input (file names only) gives the packages of the .deb files.
    """
    it = iter(lines)
    first = next(it, "").strip()
    if not first.startswith("VERSION "):
        return sorted({deb_package(w) for w in [first, *it] if w.strip().endswith(".deb")})
    for line in it:
        if not line.strip():
            break
    names = {line.split()[0] for line in it if line.strip()}
    return sorted(names)
