"""An opened target root: its config, its store and its filesystem."""

from __future__ import annotations

import os

from ashcore.btrfs import Btrfs, SubvolumeInfo
from ashcore.config import Config, load_config
from ashcore.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ashcore.btrfs import Filesystem


class Target:
    """An opened target root: its config, its store and its filesystem."""

    def __init__(
        self, root: str = "/", fs: Filesystem | None = None, config: Config | None = None
    ) -> None:
        self.root = os.path.abspath(root)
        self.config: Config = config if config is not None else load_config(self.root)
        self.fs: Filesystem = fs if fs is not None else Btrfs()
        self.store = Store(os.path.join(self.root, self.config.store.lstrip("/")))

    def deployment(self) -> SubvolumeInfo:
        return self.fs.info(self.root)
