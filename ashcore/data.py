"""Users' data, kept out of every layer: each data place is a subvolume of its own, shared.

A layer holds software and configuration, never users' data: /home, /root, /srv, /var/log,
mail spools, databases' folders (`Config.data`, [data] in ash.toml). Each is a subvolume in
the store, `<store>/data/<place>`, mounted at its place in the deployment, and named in the
root's fstab, so that every deployment mounts the same one at boot. A snapshot of the
deployment holds only the empty folder under the mount: no layer, drift, diff, rollback,
replay, try or deploy sees or changes the data (a switch of a root that is not booted moves
the mounts across; a replay's or try's stage mounts them too).

Moving existing data in (`keep_out`, run by `ashctl setup`), with no moment where the path is
missing to a running program and no byte lost:
1. a new subvolume `<place>.ash-new` in the store gets a copy (reflinks: no data is copied),
   then takes its name: a kill before that leaves a copy the next run deletes and redoes;
2. it is mounted over the place: one mount(2), so a program sees the old folder, then the
   new subvolume with the same entries, never nothing;
3. the fstab line, so that boots mount it too;
4. what changed in the old folder during the copy is copied again (newer files win), then
   every entry of the old folder (now under the mount, reached through a second mount of the
   deployment) that equals its copy (type, size, mode, owner, mtime; a link's target) is
   deleted; one that differs is kept and reported. Each step is redone by the next run
   until the old folder is empty.
A program that holds a file open for writing there keeps writing into the old copy until it
reopens it (logs: at rotation, or restart the service): setup says so.

An existing subvolume at a place (a distribution's nested subvolume) is moved into the store
(its folder swapped for an empty one with renameat2(RENAME_EXCHANGE), then mounted back), not
copied; a place that is already a mount point (a distribution's @home in fstab) is kept out
already and left alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ashcore.errors import BackendError
from ashcore.log import logger
from ashcore.mounts import (
    Mount,
    mount_at,
    mount_subvolume,
    mounts,
)
from ashcore.ondisk import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.target import Target

log = logger(__name__)

DATA_DIR = "data"  # in the store
NEW = ".ash-new"  # a copy being made, or a subvolume being moved in
FSTAB_MARK = "# ashlayers data: "


@dataclass(frozen=True)
class Place:
    """A data place of a root and how it is kept out of layers."""

    path: str  # relative to the root, as in ash.toml
    state: str  # "kept": the store's subvolume is mounted there; "mounted": the system's own
    # mount; "absent": nothing there; "in layers": setup has not moved it yet; "not mounted":
    # the store has its subvolume but nothing mounts it (doctor mounts it)
    source: str = ""  # the subvolume mounted there, when mounted

    def describe(self) -> str:
        words = {
            "kept": "its own subvolume, in no layer",
            "mounted": f"mounted by the system ({self.source}), in no layer",
            "absent": "not present",
            "in layers": "still in the layers: run `ashctl setup`",
            "not mounted": "its subvolume is not mounted: run `ashctl doctor --repair`",
        }
        return f"/{self.path}: {words[self.state]}"


def subvolume_of(target: Target, place: str) -> str:
    return os.path.join(target.store.path, DATA_DIR, place)


def _store_mount(target: Target) -> Mount:
    found = mount_at(target.store.path)
    if found is None:
        raise BackendError(f"the store {target.store.path} is not mounted", hint="run setup")
    return found


def _fs_path(target: Target, place: str) -> str:
    """The data subvolume's path inside the filesystem (what `subvol=` names)."""
    return _store_mount(target).fs_root.rstrip("/") + f"/{DATA_DIR}/{place}"


def places(target: Target) -> list[Place]:
    """Each configured data place and its state (one read of the mount table)."""
    table = {m.target: m for m in mounts()}  # the last mount at a path wins, as in mount_at
    store = table.get(os.path.realpath(target.store.path))
    found = []
    for place in target.config.data:
        path = os.path.join(target.root, place)
        sub = subvolume_of(target, place)
        have = os.path.isdir(sub) and target.fs.is_subvolume(sub)
        mounted = table.get(os.path.realpath(path)) if os.path.isdir(path) else None
        if mounted is not None and store is not None and _is_ours(mounted, store, place):
            found.append(Place(place, "kept", mounted.fs_root))
        elif mounted is not None:
            found.append(Place(place, "mounted", f"{mounted.source}:{mounted.fs_root}"))
        elif have:
            found.append(Place(place, "not mounted"))
        elif os.path.islink(path) or not os.path.isdir(path):
            found.append(Place(place, "absent"))
        else:
            found.append(Place(place, "in layers"))
    return found


def _is_ours(mounted: Mount, store: Mount, place: str) -> bool:
    return mounted.source == store.source and mounted.fs_root == (
        store.fs_root.rstrip("/") + f"/{DATA_DIR}/{place}"
    )


def keep_out(target: Target) -> list[str]:
    """Move each data place present in the root into a subvolume of its own and mount it
    there (see the module's text); returns what was done, one line each. Idempotent: a run
    cut short at any point is finished by the next."""
    done: list[str] = []
    found = [p for p in places(target) if p.state not in ("absent", "mounted")]
    if not found:
        return done
    with top_level(target) as (top, root_rel, store_rel):
        for place in found:
            path = os.path.join(target.root, place.path)
            if place.state == "in layers":
                # A move cut short after its swap left the subvolume beside its place.
                if target.fs.is_subvolume(path) or target.fs.is_subvolume(path + NEW):
                    _move_subvolume_in(target, place.path, top, root_rel, store_rel)
                else:
                    _copy_in(target, place.path)
            if mount_at(path) is None:
                mount_subvolume(_store_mount(target).source, _fs_path(target, place.path), path)
            if _ensure_fstab(target, target.root, [place.path]):
                done.append(f"fstab: added /{place.path}")
            kept = _empty_old_folder(place.path, os.path.join(top, root_rel), target.root)
            if place.state == "in layers":
                done.append(
                    f"kept out of layers: /{place.path} (users' data: a subvolume of its own)"
                )
            if kept:
                done.append(
                    f"warning: /{place.path}: {kept} entries changed while they were moved:"
                    " kept under the mount in the deployment (restart what writes there, then"
                    " run setup again)"
                )
    return done


@contextlib.contextmanager
def top_level(target: Target) -> Iterator[tuple[str, str, str]]:
    """The filesystem's top level mounted in the store's host folder (under a lease: a kill
    leaves a mount `doctor` finds), with the root's and the store's paths in it. Through it
    the folders under the data mounts are reached, and a subvolume moves between the two (a
    rename across two mounts fails with EXDEV)."""
    from ashcore.stage import host_dir, mount_top, unmount_top

    root_mount, store = mount_at(target.root), _store_mount(target)
    if root_mount is None:
        raise BackendError(f"{target.root} is not a mount point", hint="mount the root there")
    top = mount_top(host_dir(target), root_mount.source)
    try:
        yield top, root_mount.fs_root.strip("/"), store.fs_root.strip("/")
    finally:
        unmount_top(top)


def _copy_in(target: Target, place: str) -> None:
    from ashcore.run import run

    fs, path, sub = target.fs, os.path.join(target.root, place), subvolume_of(target, place)
    if fs.is_subvolume(sub):
        return
    if os.path.lexists(sub + NEW):
        fs.delete(sub + NEW)
    os.makedirs(os.path.dirname(sub), mode=0o700, exist_ok=True)
    fs.create(sub + NEW)
    run(["cp", "-a", "--reflink=auto", "--", path + "/.", sub + NEW])
    _copy_owner(path, sub + NEW)
    os.rename(sub + NEW, sub)


def _copy_owner(source: str, dest: str) -> None:
    st = os.lstat(source)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, st.st_mode & 0o7777)


def _move_subvolume_in(target: Target, place: str, top: str, root_rel: str, store_rel: str) -> None:
    """A nested subvolume at the place moves into the store: an empty folder takes its
    place in one renameat2(RENAME_EXCHANGE), then it is renamed into the store through the
    top level (btrfs moves a subvolume between subvolumes) and mounted back by the caller."""
    path = os.path.join(target.root, place)
    os.makedirs(os.path.dirname(subvolume_of(target, place)), mode=0o700, exist_ok=True)
    swapped = os.path.join(top, root_rel, place + NEW)
    sub = os.path.join(top, store_rel, DATA_DIR, place)
    if os.path.isdir(swapped) and not target.fs.is_subvolume(swapped):
        os.rmdir(swapped)  # the empty folder of a run killed before its swap
    if not os.path.lexists(swapped) and target.fs.is_subvolume(path):
        os.mkdir(path + NEW)
        _copy_owner(path, path + NEW)
        _exchange(path + NEW, path)
    if target.fs.is_subvolume(swapped) and not os.path.lexists(sub):
        os.rename(swapped, sub)
    with contextlib.suppress(OSError):
        os.rmdir(swapped)


def _exchange(a: str, b: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange):
        err = ctypes.get_errno()
        raise BackendError(f"cannot swap {a} and {b}: {os.strerror(err)}", hint="see dmesg")


def _empty_old_folder(place: str, deployment: str, root: str) -> int:
    """Step 4: copy again what changed in the old folder under the mount (`deployment` is
    the root's subvolume seen through the top level), then delete each of its entries that
    equals its copy. Returns how many entries were kept (they differ)."""
    from ashcore.run import run

    old, new = os.path.join(deployment, place), os.path.join(root, place)
    if not os.path.isdir(old) or os.path.islink(old) or not os.listdir(old):
        return 0
    # -u: a file changed during the first copy is newer than its copy, and copied again.
    run(["cp", "-a", "-u", "--reflink=auto", "--", old + "/.", new], check=False)
    return _delete_copied(old, new)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (
        stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode)
        and a.st_mode == b.st_mode
        and (a.st_uid, a.st_gid) == (b.st_uid, b.st_gid)
        and (stat.S_ISDIR(a.st_mode) or (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns))
    )


def _delete_copied(old: str, new: str) -> int:
    """Delete what under `old` has an equal copy under `new`, deepest first; count the rest."""
    kept = 0
    for top, dirs, files, top_fd in os.fwalk(old, topdown=False):
        rel = os.path.relpath(top, old)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            mine = os.lstat(name, dir_fd=top_fd)
            try:
                theirs = os.lstat(os.path.join(new, rel, name))
            except OSError:
                kept += 1
                continue
            if not _same(mine, theirs) or (
                stat.S_ISLNK(mine.st_mode)
                and os.readlink(name, dir_fd=top_fd) != os.readlink(os.path.join(new, rel, name))
            ):
                kept += 1
                continue
            os.unlink(name, dir_fd=top_fd)
        for name in dirs:
            if os.path.islink(os.path.join(top, name)):
                continue
            try:
                os.rmdir(name, dir_fd=top_fd)
            except OSError:
                continue  # it kept something: counted below it
    return kept


def mount_places(target: Target, root: str) -> list[str]:
    """Mount the store's data subvolumes in the deployment mounted at `root` (a replay's or
    try's stage): the managers run there see the same data as the root. Returns those made."""
    have = [
        p
        for p in target.config.data
        if os.path.isdir(subvolume_of(target, p))
        and target.fs.is_subvolume(subvolume_of(target, p))
    ]
    if not have:
        return []
    made = []
    table = {m.target for m in mounts()}
    store = _store_mount(target)
    for place in have:
        path = os.path.join(root, place)
        if os.path.islink(path) or os.path.realpath(path) in table:
            continue
        os.makedirs(path, exist_ok=True)
        mount_subvolume(store.source, store.fs_root.rstrip("/") + f"/{DATA_DIR}/{place}", path)
        made.append(path)
    return made


def _ensure_fstab(target: Target, root: str, wanted: list[str]) -> bool:
    """Add the fstab line of each place in `wanted` whose subvolume the store has to the
    fstab of the deployment at `root`. Returns whether the file changed."""
    from ashcore.mounts import filesystem_uuid

    fstab = os.path.join(root, "etc/fstab")
    try:
        with open(fstab, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    present = {line.split()[1] for line in text.splitlines() if len(line.split()) >= 2}
    missing = [
        place
        for place in wanted
        if "/" + place not in present and target.fs.is_subvolume(subvolume_of(target, place))
    ]
    if not missing:
        return False  # the usual case: no mount table read, no process started
    store = _store_mount(target)
    uuid = filesystem_uuid(store.source)
    source = f"UUID={uuid}" if uuid else store.source
    lines = []
    for place in missing:
        subvol = store.fs_root.rstrip("/") + f"/{DATA_DIR}/{place}"
        lines.append(f"{FSTAB_MARK}/{place}\n{source} /{place} btrfs subvol={subvol} 0 0\n")
    if text and not text.endswith("\n"):
        text += "\n"
    write_atomic(fstab, (text + "".join(lines)).encode())
    return True


def carry_fstab(target: Target, deployment: str) -> None:
    """Before a switch to `deployment`: its fstab names every data subvolume the store has
    (a layer older than a place's move lacks its line), so that its boot mounts them."""
    _ensure_fstab(target, deployment, list(target.config.data))


def mount_missing(target: Target) -> list[str]:
    """Mount each data subvolume the store has at its place where nothing is mounted (a
    root mounted again by hand): `doctor --repair`. Returns those mounted."""
    return mount_places(target, target.root)
