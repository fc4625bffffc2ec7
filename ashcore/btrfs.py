"""The filesystem backend: btrfs through python-btrfsutil, and `btrfs send` for diffs.

`Filesystem` is what the rest of the core needs; `Btrfs` is the one real implementation
(unit tests use a fake). Every errno the kernel gives becomes a `BackendError` that names
the path and says what to do.
"""

from __future__ import annotations

import errno
import os
import stat

from ashcore.errors import BackendError
from ashcore.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol


class SubvolumeInfo(Value):
    __slots__ = ("generation", "id", "otransid", "parent_uuid", "received_uuid", "uuid")
    id: int
    uuid: str
    parent_uuid: str | None
    generation: int  # the last transaction that changed it
    otransid: int  # the transaction that created it: a snapshot holds every older write
    received_uuid: str | None  # the sender's uuid, for a subvolume made by `btrfs receive`

    def __init__(
        self,
        id: int,
        uuid: str,
        parent_uuid: str | None,
        generation: int,
        otransid: int = 0,
        received_uuid: str | None = None,
    ) -> None:
        self._init(
            id=id,
            uuid=uuid,
            parent_uuid=parent_uuid,
            generation=generation,
            otransid=otransid,
            received_uuid=received_uuid,
        )

    @property
    def identity(self) -> str:
        """The uuid `btrfs send` names this subvolume by: the one it was received as, if any.
        A store has a layer of another machine when a subvolume's identity is that layer's."""
        return self.received_uuid or self.uuid


if TYPE_CHECKING:

    class Filesystem(Protocol):
        def info(self, path: str) -> SubvolumeInfo: ...

        def is_subvolume(self, path: str) -> bool: ...

        def is_read_only(self, path: str) -> bool: ...

        def snapshot(
            self, source: str, dest: str, *, read_only: bool, drop: tuple[str, ...] = ()
        ) -> None:
            """Snapshot `source` to `dest`; remove the relative paths `drop` from the copy."""

        def delete(self, path: str) -> None: ...

        def reclaim(self, path: str, timeout: float) -> None:
            """Wait (up to `timeout` s) until the subvolumes deleted on `path`'s filesystem
            have given their space back."""

        def set_read_only(self, path: str, read_only: bool) -> None: ...

        def create(self, path: str) -> None: ...

        def changed_paths(self, old: str, new: str) -> set[str]:
            """Paths that differ between two read-only snapshots (time-only changes excluded)."""
            ...

        def changed_since(self, path: str, generation: int, since: float) -> set[str] | None:
            """Paths of the subvolume at `path` changed after (generation, since), cheaply;
            a removed file shows as its folder. None when the filesystem cannot tell."""
            ...

        def set_default(self, path: str) -> None: ...

        def default_id(self, path: str) -> int: ...

        def path_of(self, path: str, subvolume_id: int) -> str:
            """The path of a subvolume of `path`'s filesystem, from its top level."""
            ...


def _fail(e: OSError, what: str, path: str) -> BackendError:
    code = e.errno
    if code == errno.ENOSPC:
        return BackendError(
            f"no space left on the filesystem of {path} ({what})",
            hint="`ashctl list` shows what each layer holds; `ashctl prune --max-size SIZE`"
            " deletes the oldest snapshots down to SIZE (records stay), then try again",
        )
    if code in (errno.ENOTTY, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return BackendError(f"{path} is not on btrfs ({what})", hint="ashlayers needs a btrfs root")
    if code == errno.EROFS:
        return BackendError(f"{path} is read-only ({what})", hint="remount it read-write")
    if code in (errno.EPERM, errno.EACCES):
        return BackendError(f"permission denied on {path} ({what})", hint="run as root")
    return BackendError(f"{what} failed on {path}: {os.strerror(code or 0)}")


def unlink_inside(top: str, rel: str) -> bool:
    """Remove the file `rel` below `top`, never anything outside it: a folder on the way may
    be a symlink (in a snapshot of a root, an absolute one points at the live system). True
    when it was removed."""
    real_top = os.path.realpath(top)
    parent = os.path.realpath(os.path.join(real_top, os.path.dirname(rel)))
    if parent != real_top and not parent.startswith(real_top + "/"):
        return False
    path = os.path.join(parent, os.path.basename(rel))
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class Btrfs:
    def __init__(self) -> None:
        import btrfsutil

        self._bu = btrfsutil

    def info(self, path: str) -> SubvolumeInfo:
        try:
            info = self._bu.subvolume_info(path)
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "reading subvolume", path) from e
        parent = info.parent_uuid.hex() if any(info.parent_uuid) else None
        received = info.received_uuid.hex() if any(info.received_uuid) else None
        return SubvolumeInfo(
            info.id, info.uuid.hex(), parent, info.generation, info.otransid, received
        )

    def is_read_only(self, path: str) -> bool:
        try:
            return bool(self._bu.get_subvolume_read_only(path))
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "reading a subvolume's flags", path) from e

    def is_subvolume(self, path: str) -> bool:
        try:
            return bool(self._bu.is_subvolume(path))
        except self._bu.BtrfsUtilError:
            return False

    def snapshot(
        self, source: str, dest: str, *, read_only: bool, drop: tuple[str, ...] = ()
    ) -> None:
        present = [p for p in drop if os.path.lexists(os.path.join(source, p))]
        try:
            self._bu.create_snapshot(source, dest, read_only=read_only and not present)
            if present:
                for rel in present:
                    unlink_inside(dest, rel)
                if read_only:
                    self._bu.set_subvolume_read_only(dest, True)
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "snapshot", dest) from e

    def set_read_only(self, path: str, read_only: bool) -> None:
        try:
            self._bu.set_subvolume_read_only(path, read_only)
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "setting a subvolume's flags", path) from e

    def create(self, path: str) -> None:
        try:
            self._bu.create_subvolume(path)
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "creating subvolume", path) from e

    def delete(self, path: str) -> None:
        """Delete one subvolume, never one that holds others: a snapshot does not contain
        the subvolumes nested in its source (a container's, a nested /home), so deleting
        them with it would lose data no layer has."""
        try:
            self._bu.delete_subvolume(path)
        except self._bu.BtrfsUtilError as e:
            if e.errno == errno.ENOENT:
                return
            if e.errno == errno.ENOTEMPTY:
                raise BackendError(
                    f"{path} holds other subvolumes: not deleted",
                    hint="move or delete the subvolumes inside it first",
                ) from e
            raise _fail(e, "deleting subvolume", path) from e

    def reclaim(self, path: str, timeout: float) -> None:
        """btrfs frees a deleted subvolume's space after the transaction commits, in its
        cleaner thread: commit, then wait until none is left to clean (as `btrfs subvolume
        sync` does)."""
        import time

        deadline = time.monotonic() + timeout
        try:
            self._bu.sync(path)
            while self._bu.deleted_subvolumes(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._bu.sync(path)
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "waiting for deleted subvolumes' space", path) from e

    def changed_paths(self, old: str, new: str) -> set[str]:
        import subprocess  # only on the drift path: keep the hooks' imports small

        argv = ["btrfs", "send", "--no-data", "-q", "-p", old, new]
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
            )
        except FileNotFoundError as e:
            raise BackendError("the `btrfs` command is missing", hint="install btrfs-progs") from e
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            said = message[-1] if message else "no message"
            return self._walk(old, new, f"exit {result.returncode}: {said}")
        from ashcore.sendstream import changed_paths

        return changed_paths(result.stdout)

    def _walk(self, old: str, new: str, why: str) -> set[str]:
        """What `changed_paths` says when `btrfs send` cannot: the generic walk. The kernel's
        send refuses a path longer than PATH_MAX (ENAMETOOLONG), which any user can make in
        a folder they may write; a change there must be found, and must stop nothing."""
        import logging

        from ashcore.treecompare import changed_paths as walked

        too_long = "File name too long" in why or "-36" in why
        log = logging.getLogger(__name__)
        (log.debug if too_long else log.warning)(
            "ashlayers: `btrfs send` of %s against %s failed (%s); comparing the trees instead",
            new,
            old,
            why,
        )
        try:
            return walked(old, new)
        except OSError as e:
            raise BackendError(
                f"`btrfs send` of {new} against {old} failed ({why}), and so did comparing"
                f" the trees: {e.strerror or e}"
            ) from e

    def changed_since(self, path: str, generation: int, since: float) -> set[str] | None:
        from ashcore.treesearch import changed_paths_since

        try:
            return changed_paths_since(path, self.info(path).id, generation, since)
        except OSError:
            return None

    def set_default(self, path: str) -> None:
        try:
            self._bu.set_default_subvolume(path)
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "setting the default subvolume", path) from e

    def default_id(self, path: str) -> int:
        try:
            return int(self._bu.get_default_subvolume(path))
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "reading the default subvolume", path) from e

    def path_of(self, path: str, subvolume_id: int) -> str:
        try:
            return str(self._bu.subvolume_path(path, subvolume_id))
        except self._bu.BtrfsUtilError as e:
            raise _fail(e, "reading a subvolume's path", path) from e
