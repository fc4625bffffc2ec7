"""The boot menu: its entries (the deployment, the previous one, recent layers) and the GRUB
script written from them into the store."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass

from ashcore.boot.state import (
    BootSetup,
    Trees,
    layer_of_subvolume,
    load,
    menu_path,
    next_subvolume,
    previous_subvolume,
    subvolume_of,
)
from ashcore.errors import BackendError
from ashcore.model import Status
from ashcore.ondisk import write_atomic
from ashcore.target import Target
from ashcore.text import escaped

log = logging.getLogger(__name__)

LAYER_ARG = "ashlayers.layer"
DEFAULT_ID = "ashlayers-deployment"


@dataclass(frozen=True)
class Entry:
    """One entry of the menu: a tree with a kernel, booted as itself or as a throwaway copy."""

    key: str  # "deployment", "previous", or "layer"
    title: str
    subvolume: str  # its path inside the filesystem, e.g. @ash/deployments/3-layer7
    kernel: str  # the version: boot/vmlinuz-<kernel>, boot/initrd.img-<kernel>
    layer: int | None  # for a throwaway boot of a layer


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
BARE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+", re.ASCII)
# A variable the distribution's own kernel line expands (Ubuntu's `$vt_handoff`): kept so.
_VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})", re.ASCII)


def quotable(text: str) -> bool:
    """Whether `text` can be a word of GRUB's script: no newline, no control character,
    nothing that is not text (a file name's undecodable bytes)."""
    return text.isprintable()


def _quote(text: str) -> str:
    """A GRUB word in single quotes (no expansion inside; a quote closes, escapes, reopens)."""
    return "'" + text.replace("'", "'\\''") + "'"


def grub_word(text: str) -> str:
    """`text` as one word of GRUB's script: bare when nothing in it is special, else quoted."""
    if not quotable(text):
        raise ValueError(f"GRUB's script cannot hold {escaped(text)!r}")
    return text if BARE_WORD.fullmatch(text) else _quote(text)


def _argument(text: str) -> str:
    """A word of the kernel line read from the distribution's grub.cfg, as one word again."""
    return text if _VARIABLE.fullmatch(text) else grub_word(text)


def _linux(found: BootSetup, entry: Entry) -> str:
    tree = f"/{entry.subvolume}"
    flags = ",".join((f"subvol=/{entry.subvolume}", *found.rootflags))
    words = [
        f"($ashlayers){grub_word(f'{tree}/boot/vmlinuz-{entry.kernel}')}",
        _argument(found.root_arg),
        "ro",
        _argument(f"rootflags={flags}"),
        *(_argument(arg) for arg in found.args),
    ]
    if entry.layer is not None:
        words.append(f"{LAYER_ARG}={entry.layer}")
    initrd = f"($ashlayers){grub_word(f'{tree}/boot/initrd.img-{entry.kernel}')}"
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
        f"search --no-floppy --fs-uuid --set=ashlayers {grub_word(found.fs_uuid)}\n",
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


def entries(target: Target, count: int) -> list[Entry]:
    """The menu's entries, the deployment first; trees without a kernel are left out."""
    trees = Trees(target)
    try:
        return _entries(target, count, trees)
    finally:
        trees.close()


def _entries(target: Target, count: int, trees: Trees) -> list[Entry]:
    result = []
    nxt = next_subvolume(target)
    name = _os_name(target.root)
    previous = previous_subvolume(target, nxt, trees)
    for key, subvolume in (("deployment", nxt), ("previous", previous)):
        tree = trees.path(subvolume) if subvolume else None
        kernel = kernel_of(tree) if tree else None
        if subvolume is None or tree is None or kernel is None:
            continue
        layer = layer_of_subvolume(target, tree)
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
        result.append(Entry("layer", title, subvolume_of(target, path), kernel, candidate.id))
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
