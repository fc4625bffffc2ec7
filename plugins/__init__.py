"""The plugins: one package manager each, declared by a `Manager` subclass in its folder.

MANAGERS registers them (module, class): the one line a new manager adds outside its folder.
"""

MANAGERS = (
    ("ashplugins.apt.manager", "Apt"),
    ("ashplugins.dnf.manager", "Dnf"),
    ("ashplugins.pacman.manager", "Pacman"),
    ("ashplugins.zypper.manager", "Zypper"),
)
