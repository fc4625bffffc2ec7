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

Three rooms: `setup` (how the machine boots, and the files setup adds to the root),
`menu` (the menu's entries and the GRUB script written from them), `state` (what the store
keeps for them: what setup found, which deployment boots next and which one before).
"""
