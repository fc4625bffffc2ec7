#!/bin/sh
# The one command to try ashlayers: a shell in a throw-away Debian sid root on btrfs, with
# apt, dnf5, dnf4 and pacman and the plugins active. Nothing on this machine changes but the
# rig's own loop image (/var/tmp/ashlayers-rig) and its cache. Run as root.
set -eu
cd "$(dirname "$0")/.."
sh tests/host-deps.sh >/dev/null
exec .venv/bin/python -m tests.e2e.rig shell
