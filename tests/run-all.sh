#!/bin/sh
# The one command: set up this Debian machine's test tools and run every tier
# (unit, btrfs, end to end, then the boot tier: a VM boots the project's disk image; the e2e
# rig and the boot image are built when they are not cached). Run as root.
set -eu
cd "$(dirname "$0")/.."
sh tests/host-deps.sh
.venv/bin/pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null \
    || .venv/bin/pip install --quiet --no-deps -e .
.venv/bin/pytest "$@"
# The boot tier apart (pyproject deselects it by default: minutes of TCG boots). Given a
# selection of tests that holds none of it, pytest says "no tests ran" (5): not a failure.
code=0
.venv/bin/pytest -m boot "$@" || code=$?
if [ "$code" -eq 5 ] && [ "$#" -gt 0 ] && [ "$*" != "-p no:cacheprovider" ]; then
    exit 0
fi
exit "$code"
