"""The dnf plugin: every dnf5 and dnf (dnf4) transaction leaves a named layer.

Hook faces: `ashlayers.actions` for libdnf5's built-in actions plugin (dnf5 and every other
libdnf5 front end; see `dnf5.py`) and a `dnf.Plugin` for dnf4 (`dnf4.py`). Database face:
`rpmdb.py` reads the installed set of any root with rpm's bindings. Installer: `install.py`.
"""
