"""Where a native package puts the files that `ashctl setup` writes on a pip install: the hook
faces of the managers, ash-commit, the prune timer's units; and the generated manual pages and
completions. Each template is filled as setup fills it (ashcore/launcher.py): the default store
and the folder the package's Python files are installed in, so that a later `ashctl setup`
finds every hook file in place, byte for byte, and writes none of them again.

    python3 -m ashpkg.layout DESTDIR --pythonpath DIR [--dnf4-plugins DIR]
        [--zsh-completions DIR] [--managers apt,dnf,pacman,zypper]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ashpkg.completion import COMPLETIONS
from ashpkg.manual import PAGES

TOP = Path(__file__).resolve().parents[1]
STORE = "/.ash"  # ashcore.config.Config().store: setup fills in the same unless ash.toml says
LIBEXEC = "usr/libexec/ashlayers"
ALPM_HOOKS = "usr/share/libalpm/hooks"  # the packages' hook folder; /etc/pacman.d/hooks: admin's
UNITS = "usr/lib/systemd/system"

# manager -> (template in the source tree, destination, mode)
HOOKS: dict[str, list[tuple[str, str, int]]] = {
    "core": [
        ("ashcore/files/ash-commit", f"{LIBEXEC}/ash-commit", 0o755),
        ("ashcore/files/ashlayers-prune.service", f"{UNITS}/ashlayers-prune.service", 0o644),
        ("ashcore/files/ashlayers-prune.timer", f"{UNITS}/ashlayers-prune.timer", 0o644),
    ],
    "apt": [
        ("plugins/apt/files/apt-hook", f"{LIBEXEC}/apt-hook", 0o755),
        ("plugins/apt/files/80ashlayers", "etc/apt/apt.conf.d/80ashlayers", 0o644),
        ("plugins/apt/files/dpkg.cfg", "etc/dpkg/dpkg.cfg.d/ashlayers", 0o644),
    ],
    "dnf": [
        ("plugins/dnf/files/dnf5-hook", f"{LIBEXEC}/dnf5-hook", 0o755),
        (
            "plugins/dnf/files/ashlayers.actions",
            "etc/dnf/libdnf5-plugins/actions.d/ashlayers.actions",
            0o644,
        ),
        ("plugins/dnf/files/ashlayers.conf", "etc/dnf/plugins/ashlayers.conf", 0o644),
        ("plugins/dnf/files/ashlayers.py", "{dnf4_plugins}/ashlayers.py", 0o644),
    ],
    "pacman": [
        ("plugins/pacman/files/pacman-hook", f"{LIBEXEC}/pacman-hook", 0o755),
        *(
            (f"plugins/pacman/files/{hook}", f"{ALPM_HOOKS}/{hook}", 0o644)
            for hook in ("00-ashlayers-pre.hook", "zz-ashlayers-post.hook")
        ),
    ],
    "zypper": [
        ("plugins/zypper/files/ashlayers", "usr/lib/zypp/plugins/commit/ashlayers", 0o755),
    ],
}


def fill(template: bytes, pythonpath: str) -> bytes:
    return template.replace(b"@ASH_STORE@", STORE.encode()).replace(
        b"@ASH_PYTHONPATH@", pythonpath.encode()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def lay_out(
    dest: Path,
    pythonpath: str,
    *,
    managers: tuple[str, ...] = ("apt", "dnf", "pacman", "zypper"),
    dnf4_plugins: str = "usr/lib/python3/dist-packages/dnf-plugins",
    zsh_completions: str = "usr/share/zsh/vendor-completions",
) -> list[str]:
    """Write every file into dest; returns their paths relative to dest."""
    written = []
    for manager in ("core", *managers):
        for template, where, mode in HOOKS[manager]:
            relative = where.format(dnf4_plugins=dnf4_plugins.strip("/"))
            _write(dest / relative, fill((TOP / template).read_bytes(), pythonpath), mode)
            written.append(relative)
    for name, make in PAGES.items():
        relative = f"usr/share/man/man{name.rsplit('.', 1)[1]}/{name}"
        _write(dest / relative, make().encode(), 0o644)
        written.append(relative)
    completions = {
        "ashctl.bash": "usr/share/bash-completion/completions/ashctl",
        "_ashctl": f"{zsh_completions.strip('/')}/_ashctl",
    }
    for name, make in COMPLETIONS.items():
        _write(dest / completions[name], make().encode(), 0o644)
        written.append(completions[name])
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m ashpkg.layout", description=__doc__)
    parser.add_argument("dest", type=Path, help="the package's staging root")
    parser.add_argument("--pythonpath", required=True, help="where ashcore is installed")
    parser.add_argument("--dnf4-plugins", default="usr/lib/python3/dist-packages/dnf-plugins")
    parser.add_argument("--zsh-completions", default="usr/share/zsh/vendor-completions")
    parser.add_argument("--managers", default="apt,dnf,pacman,zypper")
    args = parser.parse_args(argv)
    lay_out(
        args.dest,
        args.pythonpath,
        managers=tuple(m for m in args.managers.split(",") if m),
        dnf4_plugins=args.dnf4_plugins,
        zsh_completions=args.zsh_completions,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
