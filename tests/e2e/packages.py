"""Tiny test packages, the same names in deb, rpm and pacman form, and their local repos.

`write_repos(root)` writes the recipes and a build script below /srv/ashtest/build of a root;
`BUILD_SCRIPT` (run chrooted) builds every package with the root's own tools, makes the three
repositories and points apt, dnf5, dnf4 and pacman at them (nothing else: they work offline).

In the root afterwards:
- /srv/ashtest/deb     flat apt repo, `deb [trusted=yes] file:/srv/ashtest/deb ./`
- /srv/ashtest/rpm     createrepo_c repo, /etc/yum.repos.d/ashtest.repo (gpgcheck=0)
- /srv/ashtest/pacman  `[ashtest]` (newest versions); /srv/ashtest/pacman-old `[ashtest-old]`
                       (ashtest-v 1.0, since a pacman sync db holds one version per name)
- /srv/ashtest/files   every package file, e.g. ashtest-v_1.0_all.deb,
                       ashtest-v-1.0-1.noarch.rpm, ashtest-v-1.0-1-any.pkg.tar.zst
Each package installs /usr/share/ashtest/<short name>, holding its version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SRV = Path("srv/ashtest")


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    depends: tuple[str, ...] = ()
    fails: bool = False  # its install script (postinst, %post, post_install) exits 1

    @property
    def short(self) -> str:
        return self.name.removeprefix("ashtest-")

    @property
    def file(self) -> str:
        return f"usr/share/ashtest/{self.short}"

    @property
    def summary(self) -> str:
        return f"ashlayers test package {self.short} {self.version}"


RECIPES = (
    Recipe("ashtest-a", "1.0"),
    Recipe("ashtest-b", "1.0", depends=("ashtest-a",)),
    Recipe("ashtest-v", "1.0"),
    Recipe("ashtest-v", "2.0"),
    Recipe("ashtest-fail", "1.0", fails=True),
)


def deb_file(r: Recipe) -> str:
    return f"{r.name}_{r.version}_all.deb"


def rpm_file(r: Recipe) -> str:
    return f"{r.name}-{r.version}-1.noarch.rpm"


def pacman_file(r: Recipe) -> str:
    return f"{r.name}-{r.version}-1-any.pkg.tar.zst"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _payload(tree: Path, r: Recipe) -> None:
    _write(tree / r.file, f"{r.version}\n")


def _deb(build: Path, r: Recipe) -> None:
    tree = build / "deb" / f"{r.name}_{r.version}"
    _payload(tree, r)
    control = [
        f"Package: {r.name}",
        f"Version: {r.version}",
        "Architecture: all",
        "Maintainer: ashlayers tests <tests@ashlayers.invalid>",
        "Section: misc",
        "Priority: optional",
    ]
    if r.depends:
        control.append(f"Depends: {', '.join(r.depends)}")
    control.append(f"Description: {r.summary}")
    _write(tree / "DEBIAN/control", "\n".join(control) + "\n")
    if r.fails:
        script = "#!/bin/sh\necho 'ashtest-fail: postinst fails' >&2\nexit 1\n"
        _write(tree / "DEBIAN/postinst", script, 0o755)


def _rpm_spec(r: Recipe) -> str:
    lines = [
        f"Name: {r.name}",
        f"Version: {r.version}",
        "Release: 1",
        f"Summary: {r.summary}",
        "License: MIT",
        "BuildArch: noarch",
        *(f"Requires: {d}" for d in r.depends),
        "%description",
        r.summary,
        "%install",
        f"mkdir -p %{{buildroot}}/{Path(r.file).parent}",
        f"echo {r.version} > %{{buildroot}}/{r.file}",
        "%files",
        f"/{r.file}",
    ]
    if r.fails:
        lines += ["%post", "echo 'ashtest-fail: %post fails' >&2", "exit 1"]
    return "\n".join(lines) + "\n"


# An empty rpmdb cannot satisfy the /bin/sh a shell scriptlet requires: this package, installed
# with `rpm -i --nodeps` into the golden's rpmdb, provides it (it ships no file).
BINSH_SPEC = """Name: ashtest-binsh
Version: 1.0
Release: 1
Summary: Provides /bin/sh to the rpmdb of the ashlayers test rig
License: MIT
BuildArch: noarch
Provides: /bin/sh
%description
Provides /bin/sh (which dpkg installed) to the rpmdb.
%files
"""


def _pacman(build: Path, r: Recipe) -> None:
    tree = build / "pacman" / f"{r.name}-{r.version}"
    _payload(tree, r)
    info = [
        f"pkgname = {r.name}",
        f"pkgbase = {r.name}",
        f"pkgver = {r.version}-1",
        f"pkgdesc = {r.summary}",
        "builddate = 1700000000",
        "packager = ashlayers tests <tests@ashlayers.invalid>",
        f"size = {len(r.version) + 1}",
        "arch = any",
        "license = MIT",
        *(f"depend = {d}" for d in r.depends),
    ]
    _write(tree / ".PKGINFO", "\n".join(info) + "\n")
    if r.fails:
        _write(
            tree / ".INSTALL",
            "post_install() {\n  echo 'ashtest-fail: post_install fails' >&2\n  return 1\n}\n",
        )


PACMAN_CONF_OPTIONS = "LocalFileSigLevel = Never\n"
PACMAN_CONF_REPOS = """
[ashtest]
SigLevel = Never
Server = file:///srv/ashtest/pacman

[ashtest-old]
SigLevel = Never
Server = file:///srv/ashtest/pacman-old
"""

YUM_REPO = """[ashtest]
name=ashlayers test packages
baseurl=file:///srv/ashtest/rpm
enabled=1
gpgcheck=0
repo_gpgcheck=0
"""

ZYPP_REPO = """[ashtest]
name=ashlayers test packages
baseurl=file:///srv/ashtest/rpm
type=rpm-md
enabled=1
autorefresh=1
gpgcheck=0
"""

BUILD_SCRIPT = r"""
set -eu
B=/srv/ashtest/build
F=/srv/ashtest/files
mkdir -p $F /srv/ashtest/deb /srv/ashtest/rpm /srv/ashtest/pacman /srv/ashtest/pacman-old

# deb: every version indexed (-m), so that apt-get install ashtest-v=1.0 works
for tree in $B/deb/*/; do
    dpkg-deb --root-owner-group -Zgzip --build "$tree" $F/ >/dev/null
done
cp $F/*.deb /srv/ashtest/deb/
cd /srv/ashtest/deb
dpkg-scanpackages -m . /dev/null > Packages 2>/dev/null
apt-ftparchive release . > Release

# rpm: rpmbuild + createrepo_c; ashtest-binsh gives the rpmdb its /bin/sh
for spec in $B/rpm/*.spec; do
    rpmbuild --quiet -bb --define "_topdir $B/rpmbuild" "$spec"
done
mv $B/rpmbuild/RPMS/noarch/ashtest-binsh-*.rpm $B/
mv $B/rpmbuild/RPMS/noarch/*.rpm $F/
cp $F/*.rpm /srv/ashtest/rpm/
createrepo_c --quiet /srv/ashtest/rpm
rpm -i --nodeps $B/ashtest-binsh-1.0-1.noarch.rpm

# pacman: bsdtar + repo-add; the sync db of [ashtest] holds the newest version of each name
for tree in $B/pacman/*/; do
    name=$(sed -n 's/^pkgname = //p' "$tree/.PKGINFO")
    ver=$(sed -n 's/^pkgver = //p' "$tree/.PKGINFO")
    (cd "$tree" && bsdtar --zstd --uid 0 --gid 0 -cf "$F/$name-$ver-any.pkg.tar.zst" .PKGINFO \
        $(test -e .INSTALL && echo .INSTALL) usr)
done
for pkg in $F/*.pkg.tar.zst; do
    case "$pkg" in
        */ashtest-v-1.0-1-any.pkg.tar.zst) cp "$pkg" /srv/ashtest/pacman-old/ ;;
        *) cp "$pkg" /srv/ashtest/pacman/ ;;
    esac
done
repo-add --quiet /srv/ashtest/pacman/ashtest.db.tar.gz /srv/ashtest/pacman/*.pkg.tar.zst
repo-add --quiet /srv/ashtest/pacman-old/ashtest-old.db.tar.gz /srv/ashtest/pacman-old/*.pkg.tar.zst

rm -rf $B
"""

CONFIGURE_SCRIPT = r"""
set -eu
# apt: only the local repo (the golden must work offline)
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:/srv/ashtest/deb ./' > /etc/apt/sources.list.d/ashtest.list
apt-get update -qq
# dnf5 and dnf4
dnf5 -q makecache
dnf -q makecache
# zypper: Debian's systemCheck requires glibc, which no rpm provides here (see RIG.md)
sed -i 's/^requires:glibc/# &/' /etc/zypp/systemCheck
zypper --non-interactive --quiet refresh >/dev/null
# pacman
mkdir -p /var/lib/pacman/local
pacman -Sy --noconfirm >/dev/null
"""


def write_repos(root: Path) -> None:
    """Write the recipes, the build script and the managers' repo configuration into root."""
    build = root / SRV / "build"
    for r in RECIPES:
        _deb(build, r)
        _write(build / "rpm" / f"{r.name}-{r.version}.spec", _rpm_spec(r))
        _pacman(build, r)
    _write(build / "rpm" / "ashtest-binsh.spec", BINSH_SPEC)
    _write(root / "etc/yum.repos.d/ashtest.repo", YUM_REPO)
    _write(root / "etc/dnf/vars/releasever", "sid\n")
    _write(root / "etc/zypp/repos.d/ashtest.repo", ZYPP_REPO)
    conf = root / "etc/pacman.conf"
    text = conf.read_text()
    if "[ashtest]" not in text:
        text = text.replace("[options]\n", "[options]\n" + PACMAN_CONF_OPTIONS, 1)
        conf.write_text(text + PACMAN_CONF_REPOS)
