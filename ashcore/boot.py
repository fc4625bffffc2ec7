"""Boot integration: what the boot loader reads, so that the next boot starts the deployment.

GRUB on a btrfs root reads its grub.cfg, kernels and initramfs from the subvolume it was
installed from (Debian: `@`), and the kernel line names that subvolume
(`rootflags=subvol=@`): the default subvolume a rollback sets is never consulted, and a
grub.cfg rewritten inside a deployment is never read. So ashlayers keeps its own menu in the
store (`<store>/boot/grub.cfg`), which GRUB reaches from any deployment's grub.cfg through
one part that `ashctl setup` adds (`/etc/grub.d/09_ashlayers`: `source` of that file). The
menu holds, as GRUB's default, the deployment the next boot starts (the default subvolume,
which rollback and deploy set) with its own kernel and initramfs; the deployment booted
before it (the way back when a new one does not boot); and a submenu of recent layers, each
booted as a throwaway copy: its read-only snapshot under an overlay in memory, made by the
initramfs script `ashlayers` (nothing written there is kept). The distribution's own
entries follow, and boot the original root.

`ashctl` rewrites the menu after every switch, and the hooks' helper after every layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
from dataclasses import dataclass
from importlib import resources

from ashcore.config import THROWAWAY_MARK
from ashcore.errors import BackendError
from ashcore.model import Status
from ashcore.mounts import filesystem_uuid, mount_at
from ashcore.ondisk import read_bytes, read_json, write_atomic, write_json
from ashcore.target import Target
from ashcore.text import escaped

log = logging.getLogger(__name__)

GRUB_CFGS = ("boot/grub/grub.cfg", "boot/grub2/grub.cfg")
GRUB_PART = "etc/grub.d/09_ashlayers"
BLS_DIRS = ("boot/loader/entries", "efi/loader/entries", "boot/efi/loader/entries")
INITRAMFS_FILES = {
    "etc/initramfs-tools/hooks/ashlayers": "initramfs-hook",
    "etc/initramfs-tools/scripts/local-bottom/ashlayers": "initramfs-local-bottom",
}
LAYER_ARG = "ashlayers.layer"
DEFAULT_ID = "ashlayers-deployment"


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


@dataclass(frozen=True)
class Entry:
    """One entry of the menu: a tree with a kernel, booted as itself or as a throwaway copy."""

    key: str  # "deployment", "previous", or "layer"
    title: str
    subvolume: str  # its path inside the filesystem, e.g. @ash/deployments/3-layer7
    kernel: str  # the version: boot/vmlinuz-<kernel>, boot/initrd.img-<kernel>
    layer: int | None  # for a throwaway boot of a layer


def boot_dir(target: Target) -> str:
    return os.path.join(target.store.path, "boot")


def menu_path(target: Target) -> str:
    return os.path.join(boot_dir(target), "grub.cfg")


# -- what the machine boots with -------------------------------------------------------------
def _grub_cfg(root: str) -> str | None:
    return next((c for c in GRUB_CFGS if os.path.isfile(os.path.join(root, c))), None)


def kernel_line(grub_cfg: str) -> list[str] | None:
    """The words of the first `linux` line of a grub.cfg (the default entry's), or None."""
    with open(grub_cfg, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.strip().split(None, 1)
            if len(words) == 2 and words[0] in ("linux", "linuxefi"):
                try:
                    return shlex.split(words[1])
                except ValueError:
                    return words[1].split()
    return None


def split_kernel_line(
    words: list[str],
) -> tuple[str | None, tuple[str, ...], tuple[str, ...], str | None]:
    """(root=..., other rootflags, the other arguments, the subvolume rootflags named) of a
    kernel line (the kernel's own path or BOOT_IMAGE= first, as GRUB and /proc/cmdline say)."""
    root_arg, flags, args, named = None, [], [], None
    for i, word in enumerate(words):
        if i == 0 and (word.startswith("/") or word.startswith("(")):
            continue
        key = word.split("=", 1)[0]
        if key == "root":
            root_arg = word
        elif key == "rootflags":
            for flag in word.split("=", 1)[1].split(","):
                if flag.startswith("subvol="):
                    named = flag[len("subvol=") :]
                elif flag and not flag.startswith("subvolid="):
                    flags.append(flag)
        elif (
            word in ("ro", "rw") or key in ("BOOT_IMAGE", "initrd") or key.startswith("ashlayers.")
        ):
            continue
        else:
            args.append(word)
    return root_arg, tuple(flags), tuple(args), named


def detect(target: Target) -> BootSetup:
    """How `target` boots: which loader, and the kernel line it boots this root with."""
    root = target.root
    mounted = mount_at(root)
    uuid = (filesystem_uuid(mounted.source) if mounted else None) or ""
    bls = [d for d in BLS_DIRS if os.path.isdir(os.path.join(root, d))]
    cfg = _grub_cfg(root)
    boot = mount_at(os.path.join(root, "boot"))
    if cfg is None:
        why = (
            f"boot loader entries in /{bls[0]} (systemd-boot): not managed yet; rollback sets"
            " the default subvolume, which boots only when the entries name no subvol="
            if bls
            else "no GRUB configuration found: rollback sets the default subvolume only"
        )
        return BootSetup("none", why, uuid, "", (), (), None)
    if boot is not None:
        return BootSetup(
            "none",
            f"/boot is a {boot.fstype} filesystem of its own: kernels are not in the layers;"
            " not managed yet: rollback sets the default subvolume only",
            uuid,
            "",
            (),
            (),
            None,
        )
    words = kernel_line(os.path.join(root, cfg)) or []
    root_arg, flags, args, named = split_kernel_line(words)
    if not uuid or not words:
        return BootSetup(
            "none",
            f"/{cfg} has no kernel line ashlayers can read: not managed",
            uuid,
            "",
            (),
            (),
            None,
        )
    said = (
        f"GRUB (/{cfg}); its kernel line names rootflags=subvol={named}, so the default"
        " subvolume alone would not switch the root: ashlayers adds its own menu"
        if named
        else f"GRUB (/{cfg}); its kernel line names no subvolume: ashlayers adds its own menu"
    )
    return BootSetup("grub", said, uuid, root_arg or f"root=UUID={uuid}", flags, args, named)


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


# -- setup -----------------------------------------------------------------------------------
def setup_boot(target: Target) -> list[str]:
    """Find out how the root boots and make rollback and deploy change what it reads.
    Idempotent; returns what it did, one line each."""
    found = detect(target)
    done = [f"boot: {found.why}"]
    os.makedirs(boot_dir(target), mode=0o700, exist_ok=True)
    write_json(os.path.join(boot_dir(target), "boot.json"), found.__dict__)
    if found.loader != "grub":
        return done
    if _drop_root_subvolume_from_fstab(target.root):
        done.append("fstab: `/` no longer names a subvolume (the boot entry names the deployment)")
    done += _install_initramfs_script(target)
    part = _grub_part(target, found)
    path = os.path.join(target.root, GRUB_PART)
    wrote = read_bytes(path) != part
    if wrote:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_atomic(path, part)
        os.chmod(path, 0o755)
        done.append(f"boot: /{GRUB_PART} (GRUB sources ashlayers' menu from the store)")
    # Told by grub.cfg itself, so that a setup whose update-grub failed runs it again.
    cfg = read_bytes(os.path.join(target.root, _grub_cfg(target.root) or GRUB_CFGS[0])) or b""
    if f"### BEGIN /{GRUB_PART} ###".encode() not in cfg or wrote:
        done += _regenerate(target.root, ["update-grub"], "grub.cfg")[0]
    start_menu(target)
    done.append(f"boot: menu in {menu_path(target)} (`ashctl boot` shows it)")
    return done


def _store_subvolume(target: Target) -> str:
    store = mount_at(target.store.path)
    if store is None:
        raise BackendError(f"the store {target.store.path} is not mounted", hint="see /etc/fstab")
    return store.fs_root.strip("/")


def _grub_part(target: Target, found: BootSetup) -> bytes:
    menu = f"/{_store_subvolume(target)}/boot/grub.cfg"
    if not _BARE.fullmatch(menu):  # it goes inside GRUB's double quotes, after a variable
        raise BackendError(
            f"the store's subvolume {escaped(menu)!r} has a name ashlayers does not write in"
            " GRUB's script",
            hint="name it with letters, digits and `@_%+=:,./-` only",
        )
    return f"""#!/bin/sh
# Written by `ashctl setup` (ashlayers): GRUB boots the deployment ashlayers names in its menu,
# kept in the store and rewritten by ashctl at each rollback, deploy and layer.
cat <<'EOF'
insmod btrfs
search --no-floppy --fs-uuid --set=ashlayers {_word(found.fs_uuid)}
if [ -f "($ashlayers){menu}" ]; then
  source "($ashlayers){menu}"
fi
EOF
""".encode()


def _regenerate(root: str, argv: list[str], what: str) -> tuple[list[str], bool]:
    """Run a boot tool of the root (update-grub, update-initramfs) when this process runs in
    that root, else say what to run there; and whether it ran."""
    from ashcore.run import run

    if os.path.realpath(root) != "/":
        return [f"boot: run `{shlex.join(argv)}` in {root} to rewrite its {what}"], False
    run(argv)
    return [f"boot: ran {shlex.join(argv)}"], True


def _drop_root_subvolume_from_fstab(root: str) -> bool:
    """fstab's `/` line names the subvolume the root was installed in (subvol=@): true of no
    deployment but that one. The kernel line decides the root; the line keeps its options."""
    path = os.path.join(root, "etc/fstab")
    text = read_bytes(path)
    if text is None:
        return False
    lines, changed = [], False
    for line in text.decode(errors="surrogateescape").splitlines(keepends=True):
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/" and not fields[0].startswith("#"):
            options = fields[3].split(",")
            kept = [o for o in options if not o.startswith(("subvol=", "subvolid="))]
            if kept != options:
                fields[3] = ",".join(kept) or "defaults"
                line = "\t".join(fields) + "\n"
                changed = True
        lines.append(line)
    if changed:
        write_atomic(path, "".join(lines).encode(errors="surrogateescape"))
    return changed


def _install_initramfs_script(target: Target) -> list[str]:
    """The script and its hook, then update-initramfs. A stamp in the store says the
    initramfs was rebuilt with these files: a setup cut short, or whose update-initramfs
    failed, rebuilds it at its next run."""
    root = target.root
    if not os.path.isdir(os.path.join(root, "etc/initramfs-tools")):
        return ["boot: no initramfs-tools: a layer from the menu boots read-only, not as a copy"]
    stamp = os.path.join(boot_dir(target), "initramfs.done")
    done = []
    for rel, name in INITRAMFS_FILES.items():
        data = resources.files("ashcore").joinpath("files", name).read_bytes()
        path = os.path.join(root, rel)
        if read_bytes(path) != data:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stamp)
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            write_atomic(path, data)
            os.chmod(path, 0o755)
            done = ["boot: initramfs script ashlayers (a layer from the menu: a throwaway copy)"]
    if os.path.exists(stamp):
        return done
    said, ran = _regenerate(root, ["update-initramfs", "-u", "-k", "all"], "initramfs")
    if ran:
        write_atomic(stamp, b"")
    return done + said


# -- the menu --------------------------------------------------------------------------------
def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", version) if p)


def kernel_of(tree: str) -> str | None:
    """The newest kernel version in `tree`/boot that has its initramfs beside it and a name
    GRUB's script can hold (one with a newline or a control character is left out, said)."""
    try:
        names = set(os.listdir(os.path.join(tree, "boot")))
    except OSError:
        return None
    versions = [
        n[len("vmlinuz-") :]
        for n in names
        if n.startswith("vmlinuz-") and f"initrd.img-{n[len('vmlinuz-') :]}" in names
    ]
    for version in versions:
        if not quotable(version):
            log.warning(
                "ashlayers: /boot/vmlinuz-%s in %s is left out of the boot menu: GRUB's script"
                " cannot hold its name",
                escaped(version),
                tree,
            )
    versions = [v for v in versions if quotable(v)]
    return max(versions, key=_version_key) if versions else None


# GRUB's script reads words as a shell does: a word of these characters only is read as it
# is; any other is put in single quotes, inside which nothing is special but the quote itself.
_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+", re.ASCII)
# A variable the distribution's own kernel line expands (Ubuntu's `$vt_handoff`): kept so.
_VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})", re.ASCII)


def quotable(text: str) -> bool:
    """Whether `text` can be a word of GRUB's script: no newline, no control character,
    nothing that is not text (a file name's undecodable bytes)."""
    return text.isprintable()


def _quote(text: str) -> str:
    """A GRUB word in single quotes (no expansion inside; a quote closes, escapes, reopens)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _word(text: str) -> str:
    """`text` as one word of GRUB's script: bare when nothing in it is special, else quoted."""
    if not quotable(text):
        raise ValueError(f"GRUB's script cannot hold {escaped(text)!r}")
    return text if _BARE.fullmatch(text) else _quote(text)


def _argument(text: str) -> str:
    """A word of the kernel line read from the distribution's grub.cfg, as one word again."""
    return text if _VARIABLE.fullmatch(text) else _word(text)


def _linux(found: BootSetup, entry: Entry) -> str:
    tree = f"/{entry.subvolume}"
    flags = ",".join((f"subvol=/{entry.subvolume}", *found.rootflags))
    words = [
        f"($ashlayers){_word(f'{tree}/boot/vmlinuz-{entry.kernel}')}",
        _argument(found.root_arg),
        "ro",
        _argument(f"rootflags={flags}"),
        *(_argument(arg) for arg in found.args),
    ]
    if entry.layer is not None:
        words.append(f"{LAYER_ARG}={entry.layer}")
    initrd = f"($ashlayers){_word(f'{tree}/boot/initrd.img-{entry.kernel}')}"
    return f"\tlinux {' '.join(words)}\n\tinitrd {initrd}\n"


def _entry(found: BootSetup, entry: Entry, options: str) -> str:
    """One menu entry; "" (said) when a path of it cannot be written in GRUB's script."""
    try:
        return f"menuentry {_quote(escaped(entry.title))} {options} {{\n{_linux(found, entry)}}}\n"
    except ValueError as e:
        log.warning("ashlayers: %s is left out of the boot menu: %s", escaped(entry.title), e)
        return ""


def menu_text(found: BootSetup, entries: list[Entry]) -> str:
    """The menu GRUB sources: the deployment (default), the previous one, a layers submenu."""
    out = [
        "# ashlayers' boot menu, rewritten by ashctl (`ashctl boot` shows it). Do not edit.\n",
        "insmod btrfs\n",
        f"search --no-floppy --fs-uuid --set=ashlayers {_word(found.fs_uuid)}\n",
        "export ashlayers\n",
    ]
    layers = [e for e in entries if e.key == "layer"]
    default = False
    for entry in entries:
        if entry.key == "layer":
            continue
        options = f"--id {DEFAULT_ID}" if entry.key == "deployment" else "--id ashlayers-previous"
        if entry.key == "previous":
            options += " --hotkey=p"
        written = _entry(found, entry, options)
        out.append(written)
        default = default or (entry.key == "deployment" and bool(written))
    if layers:
        out.append(
            "submenu 'ashlayers: boot a layer as a throwaway copy (nothing is kept)'"
            " --id ashlayers-layers --hotkey=l {\n"
        )
        for n, entry in enumerate(layers, 1):
            key = f" --hotkey={n}" if n <= 9 else ""
            out.append(_entry(found, entry, f"--id ashlayers-layer-{entry.layer}{key}"))
        out.append("}\n")
    if default:
        # Not over a one-shot choice (`grub-reboot`: 00_header set boot_once).
        out.append(f'if [ -z "${{boot_once}}" ]; then\n  set default={DEFAULT_ID}\nfi\n')
    return "".join(out)


def _subvolume_of(target: Target, path: str) -> str:
    """The path inside the filesystem of a path under the store (a layer, a deployment)."""
    return f"{_store_subvolume(target)}/{os.path.relpath(path, target.store.path)}"


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
    subvolume = f"{_store_subvolume(target)}/{os.path.relpath(new, target.store.path)}"
    previous = state.get("previous")
    if old is not None and old != subvolume:
        trees = _Trees(target)
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


class _Trees:
    """Where subvolumes of the root's filesystem are seen from here: under the store, the
    root, or else a private mount of the top level made on first need (the original root
    `@` once a rollback left it). `close` unmounts it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.store = _store_subvolume(target)
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


def _layer_of_subvolume(target: Target, tree: str) -> int | None:
    with contextlib.suppress(BackendError):
        return target.store.head(target.fs.info(tree).uuid)[0]
    return None


def previous_subvolume(target: Target, nxt: str, trees: _Trees) -> str | None:
    """The deployment the root was before the last switch, while it exists and is not the
    next one (a switch that was undone leaves them equal)."""
    remembered = _state(target).get("previous")
    if remembered is None or remembered == nxt:
        return None
    path = trees.path(remembered)
    if path is None or not target.fs.is_subvolume(path):
        return None
    return remembered


def entries(target: Target, count: int) -> list[Entry]:
    """The menu's entries, the deployment first; trees without a kernel are left out."""
    trees = _Trees(target)
    try:
        return _entries(target, count, trees)
    finally:
        trees.close()


def _entries(target: Target, count: int, trees: _Trees) -> list[Entry]:
    result = []
    nxt = next_subvolume(target)
    name = _os_name(target.root)
    previous = previous_subvolume(target, nxt, trees)
    for key, subvolume in (("deployment", nxt), ("previous", previous)):
        tree = trees.path(subvolume) if subvolume else None
        kernel = kernel_of(tree) if tree else None
        if subvolume is None or tree is None or kernel is None:
            continue
        layer = _layer_of_subvolume(target, tree)
        what = f"layer {layer}" if layer is not None else "no layer"
        label = "the deployment" if key == "deployment" else "the previous deployment"
        title = f"{name}: {label}, {what} ({os.path.basename(subvolume)}, ashlayers)"
        result.append(Entry(key, title, subvolume, kernel, None))
    shown = 0
    for candidate in reversed(target.store.layers()):
        if shown >= count:
            break
        path = target.store.layer_path(candidate.id)
        # A failed or cut operation's layer is one to inspect or roll back past, not to boot.
        if candidate.status in (Status.PRUNED, Status.FAILED, Status.INTERRUPTED) or not (
            os.path.isdir(path)
        ):
            continue
        kernel = kernel_of(path)
        if kernel is None:
            continue
        when = candidate.created[:16].replace("T", " ")
        title = f"layer {candidate.id}: {candidate.name} ({when})"
        result.append(Entry("layer", title, _subvolume_of(target, path), kernel, candidate.id))
        shown += 1
    return result


def _os_name(root: str) -> str:
    with contextlib.suppress(OSError):
        for path in ("etc/os-release", "usr/lib/os-release"):
            with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("NAME="):
                        return line.split("=", 1)[1].strip().strip('"') or "Linux"
    return "Linux"


def refresh(target: Target) -> list[Entry] | None:
    """Rewrite the menu from the store and the default subvolume; None when the loader is
    not managed. A menu without the deployment's kernel is an error: GRUB would fall back
    to the distribution's entries, which boot the original root."""
    found = load(target)
    if found is None:
        return None
    made = entries(target, target.config.boot_entries)
    write_atomic(menu_path(target), menu_text(found, made).encode())
    if not any(e.key == "deployment" for e in made):
        raise BackendError(
            f"no kernel with its initramfs in /boot of {next_subvolume(target)}: the boot menu"
            " has no entry for the deployment, and GRUB will boot the distribution's own",
            hint="install a kernel there, then run `ashctl boot --update`",
        )
    return made


def refresh_quietly(target: Target) -> None:
    """`refresh`, for paths that must not fail because of it (a switch that is done, a
    hook's helper): a failure is one warning line."""
    try:
        refresh(target)
    except Exception as e:
        log.warning("ashlayers: the boot menu was not rewritten: %s", e)


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
