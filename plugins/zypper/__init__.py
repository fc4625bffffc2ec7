"""The zypper plugin: a libzypp commit plugin that turns every zypper transaction into a layer.

Hook face: `files/ashlayers`, installed as /usr/lib/zypp/plugins/commit/ashlayers; libzypp
starts it for each commit on the root "/" (a chroot's too) and talks to it in frames
(PLUGINBEGIN, COMMITBEGIN, COMMITEND, PLUGINEND: the protocol snapper's zypp-plugin speaks).
`hook.py` translates COMMITBEGIN into a begin and COMMITEND into a seal. Database face: the
rpmdb, shared with dnf (`ashplugins.dnf.rpmdb`). Installer face: `install.py`.
"""
