"""Benchmark of the zypper plugin: the time its commit plugin adds to `zypper install` of a
tiny package.

Run as root from the project: `python3 bench/bench_zypper.py [--runs 25]` (ASH_RIG_DIR picks
the rig dir, as for the e2e tier). Three fresh roots of the rig, on the same btrfs image:
  bare     zypper alone (no commit plugin)
  ash      after `ashctl setup` (the ashlayers commit plugin; every run makes a layer)
  snapper  a snapper pre/post pair from a libzypp commit plugin, as snapper's zypp-plugin
           takes them (COMMITBEGIN, COMMITEND; `snapper --no-dbus`, config `ashbench`), here
           a bash script, since Debian does not ship snapper's plugin; needs snapper in the
           rig's root
Rounds, medians and ratios as in bench_pacman.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TOP), str(TOP / "bench")]

from bench_pacman import report, rounds  # noqa: E402

from tests.e2e.mounts import enter_private_namespace  # noqa: E402
from tests.e2e.rig import open_rig  # noqa: E402
from tests.e2e.root import Root  # noqa: E402

INSTALL = ["zypper", "--non-interactive", "--quiet", "install", "ashtest-a"]
REMOVE = ["zypper", "--non-interactive", "--quiet", "remove", "ashtest-a"]
PLUGIN = "usr/lib/zypp/plugins/commit/snapper-bench"
# A commit plugin reads frames (a command line, headers, a blank line, a body, a NUL) and
# answers each with ACK; snapper's own plugin takes the pre snapshot at COMMITBEGIN and the
# post one at COMMITEND.
SNAPPER_PLUGIN = r"""#!/bin/bash
while IFS= read -r -d '' frame; do
    frame=${frame#"${frame%%[!$'\n']*}"}
    command=${frame%%$'\n'*}
    case $command in
    COMMITBEGIN)
        snapper --no-dbus -c ashbench create -t pre -p -c number -d zypper > /tmp/snapper-pre ;;
    COMMITEND)
        snapper --no-dbus -c ashbench create -t post --pre-number "$(cat /tmp/snapper-pre)" \
            -c number -d zypper ;;
    esac
    case $command in
    PLUGINBEGIN | COMMITBEGIN | COMMITEND | PLUGINEND) printf 'ACK\n\n\0' ;;
    _DISCONNECT) printf 'ACK\n\n\0'; exit 0 ;;
    *) printf '_ENOMETHOD\nCommand:%s\n\n\0' "$command" ;;
    esac
done
"""


def setup_snapper(root: Root) -> str | None:
    """Give `root` a snapper config and the pre/post commit plugin; the reason when it cannot."""
    if not (root.path / "usr/bin/snapper").exists():
        return "snapper is not installed in the rig's root (add it to tests/e2e/base.py)"
    made = root.run(["snapper", "--no-dbus", "-c", "ashbench", "create-config", "/"], check=False)
    if made.returncode != 0:
        return f"snapper create-config failed: {(made.stderr or made.stdout).strip()}"
    plugin = root.path / PLUGIN
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text(SNAPPER_PLUGIN)
    plugin.chmod(0o755)
    return None


def check_ash(root: Root) -> None:
    """The ash root really makes a layer per run (else the figure would mean nothing)."""
    listed = root.run(["ashctl", "list"]).stdout
    if "zypper install ashtest-a" not in listed:
        raise SystemExit(f"the ashlayers commit plugin made no layer:\n{listed}")


def check_snapper(root: Root) -> None:
    """The snapper root really takes its pair (a plugin that fails is skipped silently)."""
    listed = root.run(["snapper", "--no-dbus", "-c", "ashbench", "list"]).stdout
    if "post" not in listed:
        raise SystemExit(f"the snapper commit plugin took no pre/post pair:\n{listed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_zypper: needs root (it mounts the rig)", file=sys.stderr)
        return 2
    enter_private_namespace()
    rig = open_rig()
    roots: dict[str, Root] = {}
    try:
        for name in ("bare", "ash", "snapper"):
            roots[name] = rig.new_root(f"bench-{name}-{os.getpid()}")
        roots["ash"].setup()
        why_no_snapper = setup_snapper(roots["snapper"])
        if why_no_snapper:
            roots.pop("snapper").close()

        def check(ash: Root) -> None:
            check_ash(ash)
            if "snapper" in roots:
                check_snapper(roots["snapper"])

        times, cpu = rounds(roots, INSTALL, REMOVE, args.runs, check)
    finally:
        for root in roots.values():
            root.close()
        rig.close()
    report(times, cpu, args.runs, why_no_snapper, "zypper install of a tiny package")
    return 0


if __name__ == "__main__":
    sys.exit(main())
