"""A root as a place to write in: every path resolved as the root sees it, never outside it.

A recipe's bundles and removals are untrusted: a member `var/run/x` in a root whose `var/run`
is a symlink to `/run` must land in the root's /run (and be refused there), never in the
host's. Each path's folder is opened with openat2(2) and RESOLVE_IN_ROOT (symlinks, `..`
included, resolve as if the root were `/`), RESOLVE_NO_MAGICLINKS and RESOLVE_NO_XDEV (never
across a mount point); the last component is then made or removed relative to that folder's
descriptor, without following it. The places a recipe never touches (/proc, /sys, /dev, /run,
/boot, the store) are refused by name and by where a folder resolves to.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
import tarfile
from typing import IO

from ashcore.errors import BackendError, UsageError
from ashcore.log import logger
from ashcore.text import escaped

log = logger(__name__)

KEEP_OUT = ("proc", "sys", "dev", "run", "boot")
"""The root's folders a recipe never writes in nor removes from (the store is added)."""

SYS_OPENAT2 = 437  # the same number on every architecture that has it (x86_64, arm64, ...)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
CHUNK = 1 << 20
XATTR = "SCHILY.xattr."  # how GNU tar --xattrs names an extended attribute in a pax header


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_syscall = None


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): a descriptor of `path` below `dirfd`, resolved under `resolve`'s rules."""
    global _syscall
    if _syscall is None:
        _syscall = ctypes.CDLL(None, use_errno=True).syscall
        _syscall.restype = ctypes.c_long
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_long(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        if code == errno.ENOSYS:
            raise BackendError(
                "this kernel has no openat2(2), which apply needs to stay inside the root",
                hint="apply on Linux 5.6 or later",
            )
        raise OSError(code, os.strerror(code), path)
    return int(fd)


def plain_path(rel: str) -> str | None:
    """`rel` as a plain relative path (`./` in front dropped), or None when it is not one:
    absolute, empty, with `.`, `..`, an empty part or a NUL."""
    while rel.startswith("./"):
        rel = rel[2:]
    parts = rel.split("/")
    if not rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        return None
    return rel


def kept_out(rel: str, keep_out: tuple[str, ...]) -> str | None:
    """The kept-out folder that holds `rel` (a plain path), or None."""
    for place in keep_out:
        if rel == place or rel.startswith(place + "/"):
            return place
    return None


def _exists(fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    return True


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class RefusedPath(UsageError):
    """A path a recipe may not write or remove."""


class ConfinedRoot:
    """The root at `path`, open for writes that stay inside it and out of `keep_out`."""

    def __init__(self, path: str, keep_out: tuple[str, ...]) -> None:
        self.path, self.keep_out = path, keep_out
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.top = os.fstat(self.fd)
        self.forbidden: list[os.stat_result] = []
        for place in keep_out:
            try:
                fd = openat2(self.fd, place, os.O_PATH, IN_ROOT)
            except OSError:
                continue  # missing, or a mount point (refused by RESOLVE_NO_XDEV anyway)
            try:
                found = os.fstat(fd)
            finally:
                os.close(fd)
            if not _same(found, self.top):
                self.forbidden.append(found)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> ConfinedRoot:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- where a path lands -------------------------------------------------------------------
    def _refuse(self, rel: str, why: str) -> RefusedPath:
        return RefusedPath(
            f"the recipe's path {escaped(rel)} {why}",
            hint="a recipe writes and removes only inside the root, never in /proc, /sys,"
            " /dev, /run, /boot or the store",
        )

    def _folder(self, rel: str, *, make: bool) -> int | None:
        """An O_PATH descriptor of the folder that holds `rel`, resolved in the root and
        checked; its missing folders made when `make` (else None when one is missing)."""
        folder = os.path.dirname(rel)
        try:
            fd = self._open_folder(folder, rel)
        except FileNotFoundError:
            if not make:
                return None
            fd = os.dup(self.fd)
            parts = folder.split("/")
            try:
                for i, part in enumerate(parts):
                    try:
                        deeper = self._open_folder("/".join(parts[: i + 1]), rel)
                    except FileNotFoundError:
                        self._check(fd, part, rel)
                        if _exists(fd, part):  # a symlink to nothing in the root
                            raise self._refuse(rel, "goes through a symlink to nothing") from None
                        os.mkdir(part, 0o755, dir_fd=fd)
                        deeper = self._open_folder("/".join(parts[: i + 1]), rel)
                    os.close(fd)
                    fd = deeper
            except BaseException:
                os.close(fd)
                raise
        try:
            self._check(fd, os.path.basename(rel), rel)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_folder(self, folder: str, rel: str) -> int:
        if not folder:
            return os.dup(self.fd)
        try:
            return openat2(self.fd, folder, os.O_PATH | os.O_DIRECTORY, IN_ROOT)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise self._refuse(rel, "crosses a mount point") from e
            if e.errno == errno.ENOTDIR:
                raise self._refuse(rel, "goes through something that is not a folder") from e
            if e.errno == errno.ELOOP:
                raise self._refuse(rel, "goes through a symlink loop or a magic link") from e
            raise

    def _check(self, fd: int, name: str, rel: str) -> None:
        """Refuse `name` in the folder `fd` when it, or the folder, is a place kept out (by
        name at the top; else by walking up from the folder to the root)."""
        try:
            entry = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        else:
            if any(_same(entry, f) for f in self.forbidden):
                raise self._refuse(rel, "is a place a recipe never touches")
        here = os.fstat(fd)
        if _same(here, self.top):
            if kept_out(name, self.keep_out):
                raise self._refuse(rel, f"resolves to /{name} in the root")
            return
        current = os.dup(fd)
        try:
            for _ in range(4096):
                if any(_same(here, f) for f in self.forbidden):
                    raise self._refuse(rel, "resolves into a place a recipe never touches")
                up = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=current)
                os.close(current)
                current = up
                above = os.fstat(current)
                if _same(above, self.top):
                    return
                if _same(above, here):  # the top of the namespace: not below the root
                    break
                here = above
        finally:
            os.close(current)
        raise self._refuse(rel, "resolves outside the root")

    # -- writing ------------------------------------------------------------------------------
    def write(self, member: tarfile.TarInfo, rel: str, data: IO[bytes] | None) -> bool:
        """Make `rel` what the tar `member` says (`data`: a regular file's bytes). Returns
        whether a folder was made (its times are set after its contents: `settle`)."""
        fd = self._folder(rel, make=True)
        assert fd is not None
        try:
            return self._write_in(fd, os.path.basename(rel), rel, member, data)
        finally:
            os.close(fd)

    def _write_in(
        self, fd: int, name: str, rel: str, member: tarfile.TarInfo, data: IO[bytes] | None
    ) -> bool:
        try:
            old: os.stat_result | None = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            old = None
        if member.isdir():
            if old is not None and stat.S_ISDIR(old.st_mode):
                return False  # an existing folder keeps its owner and mode (tar's default)
            if old is not None and stat.S_ISLNK(old.st_mode) and self._is_folder(rel):
                return False  # a symlink to a folder stays one (merged /usr)
            if old is not None:
                os.unlink(name, dir_fd=fd)
            os.mkdir(name, 0o700, dir_fd=fd)
            made = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                _set_owner_mode(made, member)
            finally:
                os.close(made)
            return True
        tmp = f".ash-new-{secrets.token_hex(6)}"
        try:
            same_inode = self._make(fd, tmp, rel, member, data)
            if same_inode is not None and old is not None and _same(same_inode, old):
                os.unlink(tmp, dir_fd=fd)  # already that hard link: rename would do nothing
                return False
            if old is not None and stat.S_ISDIR(old.st_mode):
                try:
                    os.rmdir(name, dir_fd=fd)
                except OSError as e:
                    raise self._refuse(rel, "is a folder that is not empty here") from e
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
        return False

    def _is_folder(self, rel: str) -> bool:
        try:
            os.close(openat2(self.fd, rel, os.O_PATH | os.O_DIRECTORY, IN_ROOT))
        except OSError:
            return False
        return True

    def _make(
        self, fd: int, tmp: str, rel: str, member: tarfile.TarInfo, data: IO[bytes] | None
    ) -> os.stat_result | None:
        """Make `tmp` in the folder `fd` as `member` says; for a hard link, the file linked."""
        if member.isreg():
            assert data is not None
            out = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=fd,
            )
            try:
                while chunk := data.read(CHUNK):
                    os.write(out, chunk)
                _set_owner_mode(out, member)
                os.utime(out, ns=_times(member))
            finally:
                os.close(out)
            return None
        if member.issym():
            os.symlink(member.linkname, tmp, dir_fd=fd)
            os.chown(tmp, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
            os.utime(tmp, ns=_times(member), dir_fd=fd, follow_symlinks=False)
            return None
        if member.islnk():
            source = plain_path(member.linkname)
            assert source is not None  # checked when the bundle was read
            at = self._folder(source, make=False)
            if at is None:
                raise self._refuse(rel, f"is a hard link to {escaped(source)}, which is missing")
            try:
                linked = os.lstat(os.path.basename(source), dir_fd=at)
                if stat.S_ISDIR(linked.st_mode):
                    raise self._refuse(rel, "is a hard link to a folder")
                os.link(
                    os.path.basename(source),
                    tmp,
                    src_dir_fd=at,
                    dst_dir_fd=fd,
                    follow_symlinks=False,
                )
            except OSError as e:
                if e.errno == errno.EXDEV:
                    raise self._refuse(rel, "is a hard link across a mount point") from e
                raise
            finally:
                os.close(at)
            return linked
        kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK}.get(
            member.type, stat.S_IFIFO
        )
        os.mknod(tmp, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=fd)
        os.chown(tmp, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
        os.chmod(tmp, member.mode & 0o7777, dir_fd=fd)  # our node, in a folder we checked
        os.utime(tmp, ns=_times(member), dir_fd=fd, follow_symlinks=False)
        return None

    def settle(self, rel: str, member: tarfile.TarInfo) -> None:
        """Give a folder `write` made its time (its contents changed it meanwhile)."""
        fd = self._folder(rel, make=False)
        if fd is None:
            return
        try:
            os.utime(
                os.path.basename(rel),
                ns=_times(member),
                dir_fd=fd,
                follow_symlinks=False,
            )
        finally:
            os.close(fd)

    # -- removing -----------------------------------------------------------------------------
    def remove(self, rel: str) -> bool:
        """Remove `rel` (a folder with all it holds); False when it is not there. A top-level
        entry, a mount point or another subvolume below it is refused, before anything goes."""
        if "/" not in rel:
            raise self._refuse(
                rel, "is a top-level entry of the root, which a recipe never removes"
            )
        fd = self._folder(rel, make=False)
        if fd is None:
            return False
        name = os.path.basename(rel)
        try:
            if _same(os.fstat(fd), self.top):
                raise self._refuse(rel, "resolves to a top-level entry of the root")
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=fd)
                return True
            self._tree(fd, name, rel, remove=False)  # a mount below refuses it before any goes
            self._tree(fd, name, rel, remove=True)
            return True
        finally:
            os.close(fd)

    def _tree(self, fd: int, name: str, rel: str, *, remove: bool) -> None:
        """Walk the folder `name` in `fd` (removing it when `remove`), refusing to enter a
        mount point or another filesystem (a subvolume of its own)."""
        try:
            inner = openat2(
                fd,
                name,
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS,
            )
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise self._refuse(rel, "is or holds a mount point") from e
            raise
        try:
            if os.fstat(inner).st_dev != os.fstat(fd).st_dev:
                raise self._refuse(rel, "is or holds a subvolume or filesystem of its own")
            with os.scandir(inner) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            for child, is_dir in names:
                if is_dir:
                    self._tree(inner, child, f"{rel}/{child}", remove=remove)
                elif remove:
                    os.unlink(child, dir_fd=inner)
        finally:
            os.close(inner)
        if remove:
            os.rmdir(name, dir_fd=fd)


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """Access and change time, in ns: the member's mtime (tar keeps no other)."""
    ns = int(member.mtime * 10**9)
    return ns, ns


def _set_owner_mode(fd: int, member: tarfile.TarInfo) -> None:
    """Owner, then mode (a chown drops setuid bits), then extended attributes (a chown drops
    file capabilities) of the file open at `fd`."""
    os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR):
            try:
                os.setxattr(fd, key[len(XATTR) :], value.encode("utf-8", "surrogateescape"))
            except OSError as e:
                log.warning("ashctl: %s: extended attribute %s not set: %s", member.name, key, e)
