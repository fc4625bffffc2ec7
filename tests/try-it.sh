#!/bin/sh
# The one command to try ashlayers: a shell in a throw-away Debian sid root on btrfs, with
# apt, dnf5, dnf4 and pacman and the plugins active. Nothing on this machine changes but the
# rig's own loop image (/var/tmp/ashlayers-rig) and its cache. Run as root.
set -eu
cd "$(dirname "$0")/.."
sh tests/host-deps.sh >/dev/null
# `.venv/bin/ashctl --root ROOT rollback ID`, from outside, is how that root rolls back.
.venv/bin/pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null \
    || .venv/bin/pip install --quiet --no-deps -e .
exec .venv/bin/python -m tests.e2e.rig shell
