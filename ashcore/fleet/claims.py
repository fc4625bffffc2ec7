"""Which subvolume `btrfs receive` will take a stream's parent from, and whether to trust it.

An incremental stream names its parent by uuid, and `btrfs receive` takes the first
subvolume of the whole filesystem whose received uuid (else uuid) is that one: not
necessarily this store's layer. The uuids of a pushed line are public (in its index), and
any user may create a subvolume, give it a received uuid and make it read-only; a stream
received against such a subvolume would build a layer from that user's files. So before an
incremental stream is received, every subvolume that claims its parent's identity is looked
at: this store's layer, or a read-only subvolume owned by root (another root's store that
pulled the same line: the same content) are fine; any other is refused. After the receive,
the new layer's parent must be one of those.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from ashcore.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.target import Target

READ_ONLY = 1  # BTRFS_SUBVOL_RDONLY in a subvolume's flags


class Claims:
    """The filesystem's subvolumes, seen from its top level (mounted for the pull)."""

    def __init__(self, target: Target) -> None:
        from ashcore.data import top_level

        self._mount: AbstractContextManager[tuple[str, str, str]] = top_level(target)
        self.top = ""

    def __enter__(self) -> Claims:
        self.top, _, _ = self._mount.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mount.__exit__(None, None, None)

    def check(self, identity: str, ours: str) -> set[str]:
        """The uuids of the subvolumes `btrfs receive` may take as `identity` (`ours` among
        them); raises UsageError when another may be taken and is not to be trusted."""
        import btrfsutil

        own = btrfsutil.subvolume_info(ours).uuid.hex()
        trusted = {own}
        for path, info in btrfsutil.SubvolumeIterator(self.top, info=True):
            claims = identity in (info.received_uuid.hex(), info.uuid.hex())
            if not claims or info.uuid.hex() == own:
                continue
            full = os.path.join(self.top, path)
            try:
                owner = os.lstat(full).st_uid
            except OSError:
                owner = -1
            if owner != 0 or not info.flags & READ_ONLY:
                raise UsageError(
                    f"the subvolume /{path} (owner uid {owner}) claims to be a layer of the"
                    " line, and `btrfs receive` could build a layer from it: refused, nothing"
                    " written",
                    hint="delete that subvolume (it is no layer of this store), or pull with"
                    " --replay",
                )
            trusted.add(info.uuid.hex())
        return trusted
