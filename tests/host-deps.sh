#!/bin/sh
# Host tools the whole test suite needs on a fresh Debian 12 machine, and the project's venv.
# Idempotent: run it again at any time. Needs root (apt-get).
set -eu
cd "$(dirname "$0")/.."

# docker-registry, apache2-utils (htpasswd -B), openssl and iproute2 (ip netns): the OCI
# registry rig of tests/registry.py; gnupg and gpgv: the fleet's signed lines.
packages="mmdebstrap btrfs-progs python3-btrfsutil python3-venv zstd tar util-linux coreutils
          fdisk qemu-system-x86 qemu-utils
          python3-apt python3-rpm python3-dnf
          ca-certificates debian-archive-keyring zsh groff-base grub-common
          docker-registry apache2-utils openssl iproute2 gnupg gpgv"
missing=""
for p in $packages; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get -o Acquire::Retries=3 update
    DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y --no-install-recommends $missing
fi

# The venv sees the system's python3-btrfsutil (it is not on PyPI).
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
for tool in pytest mypy ruff; do
    [ -x ".venv/bin/$tool" ] || .venv/bin/pip install --quiet --upgrade "$tool"
done
.venv/bin/python -c 'import btrfsutil' || { echo "python3-btrfsutil not importable" >&2; exit 1; }
echo "host ready: run .venv/bin/pytest (the e2e tier builds its rig when needed)"
