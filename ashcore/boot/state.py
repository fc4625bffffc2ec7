"""What the store keeps for the boot menu: what setup found (`boot.json`), which deployment
boots next and which one booted before (`menu.json`), and the subvolumes' paths as seen from
here."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from ashcore.config import THROWAWAY_MARK
from ashcore.errors import BackendError
from ashcore.mounts import mount_at
from ashcore.ondisk import read_json, write_json
from ashcore.target import Target


@dataclass(frozen=True)
class BootSetup:
    """How the machine boots, as `ashctl setup` found it (kept in <store>/boot/boot.json)."""

    loader: str  # "grub", or "none" when ashlayers cannot manage it (then only the default)
    why: str  # one line: what was found
    fs_uuid: str  # the btrfs filesystem GRUB searches
    root_arg: str  # the kernel line's root=, as configured
    rootflags: tuple[str, ...]  # rootflags= besides subvol= and subvolid=
    args: tuple[str, ...]  # the rest of the kernel line (console=, quiet, ...)
    named_subvolume: str | None  # what the kernel line's rootflags=subvol= named


def boot_dir(target: Target) -> str:
    return os.path.join(target.store.path, "boot")


def menu_path(target: Target) -> str:
    return os.path.join(boot_dir(target), "grub.cfg")


def load(target: Target) -> BootSetup | None:
    """What setup found, or None (setup never looked, or the loader is not managed)."""
    data = read_json(os.path.join(boot_dir(target), "boot.json"))
    if not isinstance(data, dict) or data.get("loader") != "grub":
        return None
    try:
        return BootSetup(
            loader=str(data["loader"]),
            why=str(data["why"]),
            fs_uuid=str(data["fs_uuid"]),
            root_arg=str(data["root_arg"]),
            rootflags=tuple(str(f) for f in data["rootflags"]),
            args=tuple(str(a) for a in data["args"]),
            named_subvolume=data.get("named_subvolume"),
        )
    except (KeyError, TypeError):
        return None


def save(target: Target, found: BootSetup) -> None:
    os.makedirs(boot_dir(target), mode=0o700, exist_ok=True)
    write_json(os.path.join(boot_dir(target), "boot.json"), found.__dict__)


def store_subvolume(target: Target) -> str:
    store = mount_at(target.store.path)
    if store is None:
        raise BackendError(f"the store {target.store.path} is not mounted", hint="see /etc/fstab")
    return store.fs_root.strip("/")


def subvolume_of(target: Target, path: str) -> str:
    """The path inside the filesystem of a path under the store (a layer, a deployment)."""
    return f"{store_subvolume(target)}/{os.path.relpath(path, target.store.path)}"


def _state(target: Target) -> dict[str, str]:
    data = read_json(os.path.join(boot_dir(target), "menu.json"))
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _write_state(target: Target, state: dict[str, str]) -> None:
    os.makedirs(boot_dir(target), mode=0o700, exist_ok=True)
    write_json(os.path.join(boot_dir(target), "menu.json"), state)


def start_menu(target: Target) -> None:
    """At setup: the root as it is mounted is what boots (a switch changes it: `switched`)."""
    root = mount_at(target.root)
    if root is not None and root.fstype == "btrfs" and "next" not in _state(target):
        _write_state(target, {"next": root.fs_root.strip("/")})


def switched(target: Target, new: str) -> None:
    """A switch (rollback, deploy, replay) is done: the deployment at `new` (a path under
    the store) boots next; the one that was to boot becomes the way back, unless the switch
    deleted it (a second rollback before the reboot: the way back stays the one before)."""
    state = _state(target)
    old = state.get("next")
    subvolume = f"{store_subvolume(target)}/{os.path.relpath(new, target.store.path)}"
    previous = state.get("previous")
    if old is not None and old != subvolume:
        trees = Trees(target)
        try:
            path = trees.path(old)
            if path is not None and target.fs.is_subvolume(path):
                previous = old
        finally:
            trees.close()
    _write_state(target, {"next": subvolume, **({"previous": previous} if previous else {})})


def next_subvolume(target: Target) -> str:
    """The subvolume the next boot should start, inside the filesystem: the one the last
    switch named (kept in the store, so that a refresh from a try's or a replay's chroot
    says the same); before any, the root as mounted."""
    named = _state(target).get("next")
    if named is not None:
        return named
    root = mount_at(target.root)
    return root.fs_root.strip("/") if root is not None else ""


class Trees:
    """Where subvolumes of the root's filesystem are seen from here: under the store, the
    root, or else a private mount of the top level made on first need (the original root
    `@` once a rollback left it). `close` unmounts it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.store = store_subvolume(target)
        self.top: str | None = None

    def path(self, subvolume: str) -> str | None:
        target = self.target
        if subvolume == self.store or subvolume.startswith(self.store + "/"):
            return os.path.join(target.store.path, subvolume[len(self.store) :].lstrip("/"))
        root = mount_at(target.root)
        if root is None:
            return None
        if subvolume == root.fs_root.strip("/"):
            return target.root
        if self.top is None:
            from ashcore.stage import host_dir, mount_top

            try:
                self.top = mount_top(host_dir(target), root.source)
            except BackendError:
                return None
        return os.path.join(self.top, subvolume)

    def close(self) -> None:
        if self.top is not None:
            from ashcore.stage import unmount_top

            unmount_top(self.top)
            self.top = None


def layer_of_subvolume(target: Target, tree: str) -> int | None:
    with contextlib.suppress(BackendError):
        return target.store.head(target.fs.info(tree).uuid)[0]
    return None


def previous_subvolume(target: Target, nxt: str, trees: Trees) -> str | None:
    """The deployment the root was before the last switch, while it exists and is not the
    next one (a switch that was undone leaves them equal)."""
    remembered = _state(target).get("previous")
    if remembered is None or remembered == nxt:
        return None
    path = trees.path(remembered)
    if path is None or not target.fs.is_subvolume(path):
        return None
    return remembered


def throwaway_layer() -> int | None:
    """The layer this system booted as a throwaway copy (from the menu), or None."""
    try:
        with open(THROWAWAY_MARK, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def menu_deployments(target: Target) -> set[str]:
    """The store's deployments (names under deployments/) the boot menu offers as the way
    back: `doctor` must not take them for unused."""
    previous = _state(target).get("previous")
    if previous is None or load(target) is None:
        return set()
    head, _, name = previous.rpartition("/")
    return {name} if head.endswith("deployments") else set()
