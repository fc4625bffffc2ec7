"""The installed sets recorded on every layer: read with the root's own bindings or not at
all; a read that fails is unknown, never empty, and a delta against it is unknown."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ashcore import sets
from ashcore.errors import BackendError
from ashcore.sets import delta_between, read_sets, unknown_between


class Face:
    """A database face whose database is a file `state` under the root."""

    def __init__(self, state: str, installed: dict[str, str] | None) -> None:
        self.state, self.installed = state, installed

    def state_paths(self, root: str) -> tuple[str, ...]:
        return (self.state,)

    def read_installed(self, root: str) -> dict[str, str]:
        if self.installed is None:
            raise RuntimeError("cannot open Packages database in /x/.rpmdb")
        return dict(self.installed)

    def compare_versions(self, a: str, b: str) -> int:
        return (a > b) - (a < b)


@pytest.fixture
def faces(monkeypatch: pytest.MonkeyPatch) -> dict[str, Face]:
    known = {
        "apt": Face("var/lib/dpkg/status", {"figlet": "1"}),
        "dnf": Face("var/lib/rpm/rpmdb.sqlite", None),  # the host's rpm cannot open it
        "pacman": Face("var/lib/pacman/local", {}),
    }
    from types import SimpleNamespace

    declared = tuple(SimpleNamespace(name=name, shares_database="") for name in known)
    monkeypatch.setattr(sets, "managers", lambda: declared)
    monkeypatch.setattr(sets, "database_of", known.get)
    return known


def make_root(path: Path, *rels: str) -> str:
    for rel in rels:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("")
    return str(path)


def test_a_database_that_cannot_be_read_is_unknown_not_empty(
    faces: dict[str, Face], tmp_path: Path
) -> None:
    root = make_root(tmp_path, "var/lib/dpkg/status", "var/lib/rpm/rpmdb.sqlite")
    # pacman's database is not there: no pacman set at all (nothing installed by it).
    assert read_sets(root, "/") == {"apt": {"figlet": "1"}, "dnf": None}


def test_a_delta_against_an_unknown_set_is_unknown_not_a_removal() -> None:
    before: sets.Sets = {"apt": {"figlet": "1"}, "dnf": {"zeta-shprov": "1-1"}}
    after: sets.Sets = {"apt": {}, "dnf": None}
    deltas = delta_between(before, after)
    assert list(deltas) == ["apt"] and deltas["apt"].removed == (("figlet", "1"),)
    assert unknown_between(before, after) == ["dnf"]
    assert delta_between(after, before).keys() == {"apt"}
    # A manager absent on one side is an empty set there: that is a real change.
    assert delta_between({"apt": {}}, {"apt": {}, "dnf": {"a": "1"}})["dnf"].added == (("a", "1"),)


def test_another_root_is_read_chrooted_with_its_own_python(
    faces: dict[str, Face], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = make_root(tmp_path / "layer", "var/lib/dpkg/status", "var/lib/rpm/rpmdb.sqlite")
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        out = '{"apt": {"figlet": "1"}, "dnf": {"zeta-shprov": "1-1"}}'
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    found = read_sets(layer, str(tmp_path))
    assert found == {"apt": {"figlet": "1"}, "dnf": {"zeta-shprov": "1-1"}}
    assert calls and calls[0][:3] == ["chroot", layer, "/usr/bin/python3"]


def test_a_chrooted_read_that_fails_leaves_every_present_set_unknown(
    faces: dict[str, Face], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = make_root(tmp_path / "layer", "var/lib/dpkg/status", "var/lib/rpm/rpmdb.sqlite")

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "ModuleNotFoundError: ashcore\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert read_sets(layer, str(tmp_path)) == {"apt": None, "dnf": None}


def test_this_process_root_is_its_own() -> None:
    assert sets.in_own_root("/")
    assert not sets.in_own_root(os.path.dirname(__file__))


def test_a_run_closed_from_another_root_reads_its_database_chrooted(
    faces: dict[str, Face], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ashctl --root R` closing a dnf run that died: the rpmdb is read chrooted, and one
    that cannot be read is an error there, not an empty set (a false removal of all)."""
    layer = make_root(tmp_path / "layer", "var/lib/dpkg/status", "var/lib/rpm/rpmdb.sqlite")
    out = {"text": '{"apt": {"figlet": "1"}, "dnf": {"zeta-shprov": "1-1"}}'}

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, out["text"], "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    face = sets.ChrootedDatabase("dnf", faces["dnf"])
    assert face.read_installed(layer) == {"zeta-shprov": "1-1"}
    assert face.state_paths(layer) == ("var/lib/rpm/rpmdb.sqlite",)
    out["text"] = '{"apt": {"figlet": "1"}, "dnf": null}'
    with pytest.raises(BackendError):
        face.read_installed(layer)
    pacman = sets.ChrootedDatabase("pacman", faces["pacman"])
    assert pacman.read_installed(layer) == {}  # no pacman database there: nothing installed
