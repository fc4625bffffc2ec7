"""Boot setup: how the machine boots (the loader, the kernel line), and the files `ashctl
setup` adds to the root so that GRUB reads ashlayers' menu (a grub.d part, the initramfs
script that boots a layer as a throwaway copy, fstab's `/` line without a subvolume)."""

from __future__ import annotations

import contextlib
import os
import shlex
from importlib import resources

from ashcore.boot.menu import BARE_WORD, grub_word
from ashcore.boot.state import (
    BootSetup,
    boot_dir,
    menu_path,
    save,
    start_menu,
    store_subvolume,
)
from ashcore.errors import BackendError
from ashcore.mounts import filesystem_uuid, mount_at
from ashcore.ondisk import read_bytes, write_atomic
from ashcore.target import Target
from ashcore.text import escaped

GRUB_CFGS = ("boot/grub/grub.cfg", "boot/grub2/grub.cfg")
GRUB_PART = "etc/grub.d/09_ashlayers"
BLS_DIRS = ("boot/loader/entries", "efi/loader/entries", "boot/efi/loader/entries")
INITRAMFS_FILES = {
    "etc/initramfs-tools/hooks/ashlayers": "initramfs-hook",
    "etc/initramfs-tools/scripts/local-bottom/ashlayers": "initramfs-local-bottom",
}


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


# -- setup -----------------------------------------------------------------------------------
def setup_boot(target: Target) -> list[str]:
    """Find out how the root boots and make rollback and deploy change what it reads.
    Idempotent; returns what it did, one line each."""
    found = detect(target)
    done = [f"boot: {found.why}"]
    save(target, found)
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


def _grub_part(target: Target, found: BootSetup) -> bytes:
    menu = f"/{store_subvolume(target)}/boot/grub.cfg"
    if not BARE_WORD.fullmatch(menu):  # it goes inside GRUB's double quotes, after a variable
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
search --no-floppy --fs-uuid --set=ashlayers {grub_word(found.fs_uuid)}
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
