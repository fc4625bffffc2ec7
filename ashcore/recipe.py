"""Export and apply: a line of layers as a small recipe of operations, to reproduce a system.

`ashctl export [LAYER] [-o FILE]` (ashcore/export.py) writes the operations from the base to
LAYER (default: the deployment's layer) as TOML:

    # ashlayers recipe
    version = 2
    base = "base"

    [[operation]]
    layer = 2
    name = "apt-get install htop"
    labels = ["tools"]              # its labels (`ashctl label`), given to the layer it makes
    manager = "apt"
    command = ["apt-get", "install", "-y", "htop"]

    [[operation]]
    layer = 5
    name = "drift: etc/motd"
    files = "recipe.5.tar"          # the bundle beside the recipe: the paths it changed
    sha256 = "9f86d08..."           # the bundle's digest
    remove = ["etc/old.conf"]       # the paths it removed

A drift or `ashctl run` layer is carried as a tar bundle of the paths it changed (owners,
modes, times, links kept); its changes to a manager's own database are not (the managers
write those as they replay). A failed layer and the layer that completed it are one
operation: the manager's command that installs what the two changed (ashcore/pairs.py). A
layer that can be none of these (a script's, a failed one not completed, one whose snapshot
was pruned) is refused with one line naming it.

`ashctl [--root PATH] apply RECIPE` runs the operations in order with the real managers,
chrooted into PATH (or in place on the running system), non-interactive. A recipe is
untrusted input: the whole of it and every bundle (against its digest) is checked before
anything runs; a command must be a manager's install/remove command line; the bundles are
unpacked by our own code, member by member, each path resolved as the root sees it and
never outside it (`confined`), and nothing is written in or removed from /proc, /sys, /dev,
/run, /boot or the store, nor a top-level folder removed. In a root that is set up, each
operation's hooks make its layer as always.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from ashcore.confined import KEEP_OUT, XATTR, ConfinedRoot, kept_out, plain_path
from ashcore.errors import AshError, BackendError, UsageError
from ashcore.labels import head_if_set_up, label_made
from ashcore.stage import chroot_env
from ashcore.steps import manager_argv
from ashcore.target import Target
from ashcore.text import escaped, refused_character

VERSION = 2  # 2: each bundle's sha256
HEADER_KEYS = {"version", "base", "operation"}
OPERATION_KEYS = {"layer", "name", "labels", "manager", "command", "files", "sha256", "remove"}
CHUNK = 1 << 20


# -- reading ---------------------------------------------------------------------------------
class Bundle:
    """A bundle's bytes, checked against the recipe's digest and copied where no one can
    change them before they are unpacked; `members`: each member's path and header."""

    def __init__(self, name: str, copy: IO[bytes], members: list[tuple[str, tarfile.TarInfo]]):
        self.name, self.copy, self.members = name, copy, members

    def open(self) -> tarfile.TarFile:
        self.copy.seek(0)
        return tarfile.open(fileobj=self.copy, mode="r:")


@dataclass(frozen=True)
class Operation:
    """One operation of a recipe: a command (non-interactive), or a bundle and removals."""

    number: int
    name: str
    command: tuple[str, ...] | None
    bundle: Bundle | None
    remove: tuple[str, ...]
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    path: str
    operations: tuple[Operation, ...]

    def close(self) -> None:
        for op in self.operations:
            if op.bundle is not None:
                op.bundle.copy.close()


def _bad(path: str, what: str) -> UsageError:
    return UsageError(f"{escaped(path)}: {what}", hint="give a recipe `ashctl export` wrote")


def load(path: str, keep_out: tuple[str, ...] = KEEP_OUT) -> Recipe:
    """The recipe at `path` and its bundles, all checked (UsageError, one line, on the first
    fault); `keep_out`: the root's places no path may be in."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", hint="give a recipe file") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _bad(path, f"not UTF-8 text (byte {e.start})") from e
    except tomllib.TOMLDecodeError as e:
        raise _bad(path, f"not TOML: {e}") from e
    unknown = sorted(set(data) - HEADER_KEYS)
    if unknown:
        raise _bad(path, f"unknown key {escaped(unknown[0])}")
    if data.get("version") != VERSION:
        raise UsageError(
            f"{escaped(path)}: version {data.get('version')!r} is not {VERSION}",
            hint="export it again with this ashctl",
        )
    if not isinstance(data.get("base", ""), str):
        raise _bad(path, "`base` is not a string")
    operations = data.get("operation", [])
    if not isinstance(operations, list):
        raise _bad(path, "[[operation]] entries expected")
    folder = os.path.dirname(os.path.abspath(path))
    read: list[Operation] = []
    try:
        for number, op in enumerate(operations, 1):
            read.append(_operation(path, folder, number, op, keep_out))
    except BaseException:
        Recipe(path, tuple(read)).close()
        raise
    return Recipe(path, tuple(read))


def _operation(
    path: str, folder: str, number: int, op: object, keep_out: tuple[str, ...]
) -> Operation:
    where = f"operation {number}"
    if not isinstance(op, dict):
        raise _bad(path, f"{where} is not a table")
    unknown = sorted(set(op) - OPERATION_KEYS)
    if unknown:
        raise _bad(path, f"{where}: unknown key {escaped(unknown[0])}")
    name = op.get("name", "")
    if not isinstance(name, str) or refused_character(name) is not None:
        raise _bad(path, f"{where}: `name` must be one line of text")
    if not isinstance(op.get("layer", 0), int) or not isinstance(op.get("manager", ""), str):
        raise _bad(path, f"{where}: `layer` must be a number and `manager` a string")
    if ("command" in op) == ("files" in op):
        raise _bad(path, f"{where} needs either a command or files (a bundle beside it)")
    labels = _labels(path, where, op.get("labels", []))
    if "command" in op:
        if {"sha256", "remove"} & set(op):
            raise _bad(path, f"{where}: a command takes no `sha256` or `remove`")
        return Operation(number, name, _command(path, where, op["command"]), None, (), labels)
    removed = op.get("remove", [])
    if not isinstance(removed, list):
        raise _bad(path, f"{where}: `remove` must list paths")
    for rel in removed:
        _check_removal(path, where, rel, keep_out)
    bundle = _read_bundle(path, folder, where, op, keep_out)
    return Operation(number, name, None, bundle, tuple(removed), labels)


def _labels(path: str, where: str, labels: Any) -> tuple[str, ...]:
    from ashcore.labels import check_label

    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _bad(path, f"{where}: `labels` must list labels")
    try:
        return tuple(check_label(x) for x in labels)
    except UsageError as e:
        raise _bad(path, f"{where}: {e.args[0]}") from e


def _command(path: str, where: str, command: Any) -> tuple[str, ...]:
    if not isinstance(command, list) or not command:
        raise _bad(path, f"{where}: `command` must be a non-empty list of words")
    if not all(isinstance(a, str) and "\0" not in a for a in command) or not command[0]:
        raise _bad(path, f"{where}: `command` must be a list of words")
    argv = manager_argv(command)
    if argv is None:
        raise _bad(
            path,
            f"{where}: `{escaped(' '.join(command))}` is not a package manager's install or"
            " remove command line",
        )
    return tuple(argv)


def _check_removal(path: str, where: str, rel: Any, keep_out: tuple[str, ...]) -> None:
    plain = plain_path(rel) if isinstance(rel, str) else None
    if plain is None or plain != rel:
        raise _bad(path, f"{where}: `remove` must list plain paths inside the root")
    place = kept_out(rel, keep_out)
    if place is not None:
        raise _bad(path, f"{where}: removes {escaped(rel)}, in /{place}, never touched")
    if "/" not in rel:
        raise _bad(path, f"{where}: removes the top-level folder {escaped(rel)}")


def _read_bundle(
    path: str, folder: str, where: str, op: dict[str, Any], keep_out: tuple[str, ...]
) -> Bundle:
    """The operation's bundle: read once into a private copy, its digest checked, each member
    a plain path, of a kind a bundle may hold, outside the places kept out."""
    name, expected = op["files"], op.get("sha256")
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        raise _bad(path, f"{where}: `files` must name a bundle beside the recipe")
    if not isinstance(expected, str) or len(expected) != 64:
        raise _bad(path, f"{where}: `sha256` must be the bundle's digest (64 hex digits)")
    try:
        fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError(
            f"{escaped(path)}: {where}: cannot read the bundle {escaped(name)}: {e.strerror}",
            hint="keep the bundles beside the recipe",
        ) from e
    copy = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Recipe.close, after the apply)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise _bad(path, f"{where}: the bundle {escaped(name)} is not a file")
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                copy.write(chunk)
        if digest.hexdigest() != expected.lower():
            raise UsageError(
                f"{escaped(path)}: {where}: the bundle {escaped(name)} does not match its"
                " digest in the recipe",
                hint="export the recipe and its bundles again; a bundle was changed",
            )
        bundle = Bundle(name, copy, [])
        try:
            with bundle.open() as tar:
                for member in tar:
                    rel = _check_member(path, f"{where}: {name}", member, keep_out)
                    bundle.members.append((rel, member))
        except tarfile.TarError as e:
            raise _bad(path, f"{where}: the bundle {escaped(name)} is not a tar: {e}") from e
    except BaseException:
        copy.close()
        raise
    return bundle


def _check_member(path: str, where: str, member: tarfile.TarInfo, keep_out: tuple[str, ...]) -> str:
    rel = plain_path(member.name)
    if rel is None:
        raise _bad(path, f"{where}: {escaped(member.name)} is not a plain path inside the root")
    place = kept_out(rel, keep_out)
    if place is not None:
        raise _bad(path, f"{where}: {escaped(rel)} is in /{place}, which a recipe never touches")
    if not (
        member.isreg()
        or member.isdir()
        or member.issym()
        or member.islnk()
        or member.ischr()
        or member.isblk()
        or member.isfifo()
    ):
        raise _bad(path, f"{where}: {escaped(rel)} is of a kind a bundle never holds")
    if member.islnk():
        source = plain_path(member.linkname)
        if source is None or kept_out(source, keep_out) is not None:
            raise _bad(path, f"{where}: {escaped(rel)} is a hard link out of the root's files")
    return rel


def describe(rel: str, member: tarfile.TarInfo) -> str:
    """What writing `member` at `rel` makes, for --dry-run: kind, mode, owner, and a warning
    for a device node, a setuid or setgid file, or file capabilities."""
    mode = f"mode {member.mode & 0o7777:04o}, "
    if member.isreg():
        what = f"file, {member.size} bytes"
    elif member.isdir():
        what = "folder"
    elif member.issym():
        what, mode = f"symlink to {escaped(member.linkname)}", ""
    elif member.islnk():
        what, mode = f"hard link to {escaped(member.linkname)}", ""
    elif member.ischr() or member.isblk():
        kind = "character" if member.ischr() else "block"
        what = f"{kind} device {member.devmajor},{member.devminor}"
    else:
        what = "fifo"
    notes = []
    if member.ischr() or member.isblk():
        notes.append("a DEVICE NODE")
    if member.isreg() and member.mode & stat.S_ISUID:
        notes.append("SETUID")
    if member.isreg() and member.mode & stat.S_ISGID:
        notes.append("SETGID")
    if XATTR + "security.capability" in member.pax_headers:
        notes.append("with FILE CAPABILITIES")
    note = f": {', '.join(notes)}" if notes else ""
    return f"write /{escaped(rel)} ({what}, {mode}owner {member.uid}:{member.gid}){note}"


# -- apply -----------------------------------------------------------------------------------
def keep_out_of(root: str, store: str, data: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The root's places a recipe never touches: the API folders, /boot, the store, and the
    users' data places (ashcore/data.py): a recipe carries software, never someone's files."""
    rel = os.path.relpath(os.path.abspath(store), os.path.abspath(root))
    inside = plain_path(rel)
    places = (*KEEP_OUT, *data)
    return places if inside is None or rel.startswith("..") else (*places, inside)


def apply(
    target: Target,
    path: str,
    say: Callable[[str], None],
    *,
    dry_run: bool = False,
    first: int = 1,
) -> int:
    """Run the recipe's operations in the target root, from operation `first` on (the rest of
    one that stopped); returns how many ran (would run, with `dry_run`, which reads and never
    mounts nor runs anything). A manager's lists are fetched anew before its first command
    and after an operation changed its sources (a drift step that restores a repository)."""
    from ashcore.registry import managers

    root = target.root
    keep_out = keep_out_of(root, target.store.path, target.config.data)
    recipe = load(path, keep_out)
    if not dry_run:
        from ashcore.sizes import require_free

        require_free(root, "applying a recipe")
    total = len(recipe.operations)
    if not 1 <= first <= max(total, 1):
        recipe.close()
        raise UsageError(f"--from {first}: the recipe has {total} operations", hint="1 to N")
    stale = {m.name for m in managers() if m.refresh}
    try:
        for op in recipe.operations:
            if op.number < first:
                continue
            what = " ".join(op.command) if op.command else f"files {op.bundle and op.bundle.name}"
            say(
                f"[{op.number}/{total}] {'would apply' if dry_run else 'applying'}"
                f' "{escaped(op.name or "?")}": {escaped(what)}'
            )
            if dry_run:
                _show(op, say)
                continue
            started = time.monotonic()
            before = head_if_set_up(target)
            try:
                if op.command is not None:
                    for manager in managers():
                        if manager.owns(op.command) and manager.name in stale:
                            fetch = " ".join(manager.refresh)
                            say(f"      fetching {manager.name}'s lists: {fetch}")
                            _run(target, list(manager.refresh), "")
                            stale.discard(manager.name)
                    _run(target, list(op.command), op.name)
                else:
                    _unpack(root, keep_out, op)
                    stale |= _sources_changed(op)
            except AshError as e:
                e.hint = (
                    f"the operations before it were applied; fix the cause, then apply the"
                    f" rest: ashctl apply --from {op.number} {escaped(path)}"
                )
                raise
            say(f"      done in {time.monotonic() - started:.1f} s")
            label_made(target, op.labels, before, say)
    finally:
        recipe.close()
    return total


def _show(op: Operation, say: Callable[[str], None]) -> None:
    if op.labels:
        say(f"      label the layer it makes {', '.join(op.labels)}")
    if op.command is not None:
        say(f"      run {escaped(' '.join(op.command))}")
        return
    for rel in op.remove:
        say(f"      remove /{escaped(rel)}")
    assert op.bundle is not None
    for rel, member in op.bundle.members:
        say(f"      {describe(rel, member)}")


def _sources_changed(op: Operation) -> set[str]:
    """The managers whose sources a files operation wrote or removed."""
    from ashcore.registry import managers

    paths = [*op.remove, *(rel for rel, _ in (op.bundle.members if op.bundle else []))]
    return {
        m.name
        for m in managers()
        if any(p == s or p.startswith(s + "/") for p in paths for s in m.sources)
    }


def _run(target: Target, argv: list[str], name: str) -> None:
    """Run `argv` chrooted in the target root (in place on the running system), with proc,
    sys, dev and a /tmp and /run of its own mounted for the run only, under a lease in the
    store's host folder: a kill leaves mounts `doctor` finds (ashcore/stage.py)."""
    from ashcore.stage import mount_root_api, unmount_root_api

    root = target.root
    in_place = os.path.realpath(root) == "/"
    env = chroot_env(name or None)
    full = argv if in_place else ["chroot", root, *argv]
    lease = None if in_place else mount_root_api(target)
    try:
        result = subprocess.run(
            full,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
        )
    finally:
        if lease is not None:
            unmount_root_api(lease)
    if result.returncode != 0:
        lines = [x for x in (result.stderr or result.stdout).splitlines() if x.strip()]
        raise BackendError(
            f"`{' '.join(argv)}` failed (exit {result.returncode}): "
            + escaped(lines[-1] if lines else "no message"),
            hint="the operations before it were applied; fix the cause and apply the rest",
        )


def _unpack(root: str, keep_out: tuple[str, ...], op: Operation) -> None:
    """The operation's removals (deepest first: a folder that became a file is emptied
    first), then its bundle's members, each inside the root (`ConfinedRoot`)."""
    assert op.bundle is not None
    bundle = op.bundle
    with ConfinedRoot(root, keep_out) as place:
        current = ""
        try:
            for rel in sorted(op.remove, key=lambda p: p.count("/"), reverse=True):
                current = rel
                place.remove(rel)
            made = []
            with bundle.open() as tar:
                for (rel, member), read in zip(bundle.members, tar, strict=True):
                    current = rel
                    data = tar.extractfile(read) if member.isreg() else None
                    if place.write(member, rel, data):
                        made.append((rel, member))
            for rel, member in reversed(made):
                current = rel
                place.settle(rel, member)
        except OSError as e:
            raise BackendError(
                f"cannot apply /{escaped(current)} of {escaped(bundle.name)}: {e.strerror}",
                hint="the operations before it were applied; fix the cause and apply the rest",
            ) from e
