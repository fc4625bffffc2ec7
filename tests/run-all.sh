#!/bin/sh
# The one command: set up this Debian machine's test tools and run every tier
# (unit, btrfs, end to end; the e2e rig is built when it is not cached). Run as root.
set -eu
cd "$(dirname "$0")/.."
sh tests/host-deps.sh
.venv/bin/pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null \
    || .venv/bin/pip install --quiet --no-deps -e .
exec .venv/bin/pytest "$@"
