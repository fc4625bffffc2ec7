"""ashlayers core: named, read-only btrfs snapshot layers for every package operation.

This package never imports a package manager's bindings; plugins hand it a
`PackageDatabase` (see `ashcore.model`).
"""

__version__ = "0.1.0"
