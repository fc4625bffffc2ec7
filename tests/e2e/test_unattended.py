"""unattended-upgrade, the real one from Debian's archive, in the sid root: an upgrade from a
local repository of its allowed origins, applied in several dpkg runs by one process.

Its layers are whole, each named once in its dpkg log; what it writes as it ends (the
packages it kept back) is no drift of the next operation.
"""

from __future__ import annotations

import pytest

from tests.e2e.native import install_from_mirror
from tests.e2e.root import Root
from tests.e2e.test_apt import layers
from tests.e2e.test_apt_truth import new_layers, snapshot_of

pytestmark = pytest.mark.e2e

# Three packages in 1.0 and 2.0, a flat repository whose Release names an origin
# unattended-upgrade is told to allow (the rig's own repository has no Origin).
BUILD = r"""
set -e
mkdir -p /srv/uu/repo && cd /srv/uu
for p in ashtest-w ashtest-x ashtest-y; do
  for v in 1.0 2.0; do
    t=build/${p}_$v
    mkdir -p $t/DEBIAN $t/usr/share/ashtest
    echo $v > $t/usr/share/ashtest/${p#ashtest-}
    printf 'Package: %s\nVersion: %s\nArchitecture: all\n' $p $v > $t/DEBIAN/control
    printf 'Maintainer: t <t@ashlayers.invalid>\nDescription: t\n' >> $t/DEBIAN/control
    dpkg-deb --build $t ${p}_${v}_all.deb >/dev/null
  done
done
rm -rf build
"""
PUBLISH = (
    "set -e; cp /srv/uu/*_{version}_all.deb /srv/uu/repo/; cd /srv/uu/repo;"
    " dpkg-scanpackages -m . /dev/null > Packages 2>/dev/null;"
    " apt-ftparchive -o APT::FTPArchive::Release::Origin=ashtest-uu release . > Release"
)
CONFIG = """Unattended-Upgrade::Origins-Pattern { "origin=ashtest-uu"; };
Unattended-Upgrade::Package-Blacklist { "ashtest-y"; };
"""
DPKG_LOG = "var/log/unattended-upgrades/unattended-upgrades-dpkg.log"


def test_unattended_upgrade_makes_whole_layers_named_once_and_no_drift_after(root: Root) -> None:
    install_from_mirror(root, ["unattended-upgrades"])
    root.run(BUILD)
    root.run(PUBLISH.format(version="1.0"))
    (root.path / "etc/apt/sources.list.d/uu.list").write_text(
        "deb [trusted=yes] file:/srv/uu/repo ./\n"
    )
    (root.path / "etc/apt/apt.conf.d/51ashtest-uu").write_text(CONFIG)
    root.run(["apt-get", "update", "-q"])
    root.run(["apt-get", "install", "-y", "ashtest-w", "ashtest-x", "ashtest-y"])
    root.run(PUBLISH.format(version="2.0"))
    root.run(["apt-get", "update", "-q"])
    assert not (root.path / "etc/apt/sources.list").exists()  # sid's: sources.list.d only
    known = {x["id"] for x in layers(root)}
    done = root.run(["unattended-upgrade", "-v"])
    assert "Packages that will be upgraded: ashtest-w ashtest-x" in done.stdout, done.stdout
    made = new_layers(root, known)
    # One dpkg run per package set (its minimal steps): whole layers, the later runs of the
    # same process joined to its layer while it goes on.
    log = (root.path / DPKG_LOG).read_text()
    assert log.count("Log started") == 2, log
    assert made and all(x["manager"] == "apt" and x["status"] == "committed" for x in made), made
    assert all(x["name"] == "unattended-upgrade -v" for x in made), made
    upgraded = sorted(
        (d["name"], d["old"], d["new"]) for x in made for d in x["packages"]["upgraded"]
    )
    assert upgraded == [("ashtest-w", "1.0", "2.0"), ("ashtest-x", "1.0", "2.0")], made
    assert not any(x["packages"]["added"] or x["packages"]["removed"] for x in made), made
    for layer in made:
        assert not list(snapshot_of(root, layer).rglob("*.dpkg-new")), layer
    # python-apt's Cache(rootdir=...) made an empty sources.list as it started: its own write,
    # in its layer, not a drift layer before it.
    assert (snapshot_of(root, made[0]) / "etc/apt/sources.list").exists()
    # One line per layer in what dpkg printed (not one per dpkg run).
    said = [line for line in log.splitlines() if line.startswith("ashlayers: layer ")]
    assert sorted(said) == sorted(f'ashlayers: layer {x["id"]} "{x["name"]}"' for x in made), log
    # It wrote what it kept back as it ended; the next operation keeps no drift of that.
    assert (root.path / "var/lib/unattended-upgrades/kept-back").read_text().split() == [
        "ashtest-y"
    ]
    for command in (["unattended-upgrade", "-v"], ["apt-get", "install", "-y", "ashtest-v"]):
        known = {x["id"] for x in layers(root)}
        root.run(command)
        after = new_layers(root, known)
        assert not [x for x in after if x["status"] == "drift"], after
    assert [x["name"] for x in after] == ["apt-get install ashtest-v"], after
    assert root.ashctl_json("status")["drift"] is False
