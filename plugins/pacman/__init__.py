"""The pacman plugin: alpm hooks that turn every plain pacman transaction into a layer.

Hook face: `files/00-ashlayers-pre.hook` (PreTransaction, AbortOnFail, NeedsTargets) and
`files/zz-ashlayers-post.hook` (PostTransaction), which run `python3 -m ashplugins.pacman.hook`.
Database face: `database.PacmanDatabase`, the local database of any root read through pyalpm.
Installer face: `install.detect/install/uninstall`, called by `ashctl setup`.
"""
