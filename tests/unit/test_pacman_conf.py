"""The paths the plugin reads from pacman.conf (no root needed)."""

from __future__ import annotations

from pathlib import Path

from ashplugins.pacman import conf

SID_CONF = """\
#
# /etc/pacman.conf
#
[options]
#RootDir     = /
#DBPath      = /var/lib/pacman/
#HookDir     = /etc/pacman.d/hooks/
HoldPkg     = pacman glibc
Architecture = auto
CheckSpace

[ashtest]
SigLevel = Never
Server = file:///srv/ashtest/pacman
"""


def test_defaults_when_nothing_is_set() -> None:
    assert conf.parse(SID_CONF) == conf.PacmanPaths("/var/lib/pacman/", ("/etc/pacman.d/hooks/",))


def test_dbpath_and_hookdirs_of_options_only() -> None:
    text = (
        "[options]\nDBPath = /srv/db/  # comment\nHookDir = /a/\nHookDir = /b/ /c/\n"
        "[repo]\nDBPath = /not/this\nHookDir = /nor/this\n"
    )
    assert conf.parse(text) == conf.PacmanPaths("/srv/db/", ("/a/", "/b/", "/c/"))


def test_read_a_root_without_pacman_conf(tmp_path: Path) -> None:
    assert conf.read(str(tmp_path)) == conf.PacmanPaths()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/pacman.conf").write_text("[options]\nDBPath = /x/\n")
    assert conf.read(str(tmp_path)).dbpath == "/x/"
    assert conf.in_root(str(tmp_path), "/x/") == f"{tmp_path}/x/"
