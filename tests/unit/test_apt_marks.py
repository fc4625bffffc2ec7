"""What a change to dpkg's and apt's state alone did (ashplugins/apt/marks.py), and the
command that makes a package change again (`Apt.install_argv`)."""

from __future__ import annotations

from pathlib import Path

from ashplugins.apt.manager import Apt
from ashplugins.apt.marks import describe

from ashcore.model import PackageDelta
from ashcore.naming import drift_name

STATUS = "var/lib/dpkg/status"
EXTENDED = "var/lib/apt/extended_states"


def _root(tmp: Path, name: str, status: dict[str, str], auto: tuple[str, ...] = ()) -> str:
    root = tmp / name
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/apt").mkdir(parents=True)
    stanzas = [
        f"Package: {pkg}\nStatus: {state}\nArchitecture: amd64\nVersion: 1.0\n"
        f"Description: one\n a continuation line: Status: nothing\n"
        for pkg, state in [("dpkg", "install ok installed"), *status.items()]
    ]
    (root / STATUS).write_text("\n".join(stanzas))
    (root / EXTENDED).write_text(
        "".join(f"Package: {p}\nArchitecture: amd64\nAuto-Installed: 1\n\n" for p in auto)
    )
    return str(root)


def test_a_hold_and_its_release_are_said(tmp_path: Path) -> None:
    before = _root(tmp_path, "a", {"zeta-core": "install ok installed", "b": "hold ok installed"})
    after = _root(tmp_path, "b", {"zeta-core": "hold ok installed", "b": "install ok installed"})
    paths = [STATUS, "var/lib/dpkg/status-old"]
    assert describe(paths, before, after) == "unhold b, hold zeta-core"
    selected = _root(
        tmp_path, "c", {"zeta-core": "deinstall ok installed", "b": "hold ok installed"}
    )
    assert describe(paths, before, selected) == "select deinstall zeta-core"


def test_marks_are_said(tmp_path: Path) -> None:
    before = _root(
        tmp_path, "a", {"x": "install ok installed", "y": "install ok installed"}, ("y",)
    )
    after = _root(tmp_path, "b", {"x": "install ok installed", "y": "install ok installed"}, ("x",))
    assert describe([EXTENDED], before, after) == "mark auto x, mark manual y"


def test_a_package_change_or_another_file_is_not_said(tmp_path: Path) -> None:
    before = _root(tmp_path, "a", {"x": "install ok installed"})
    after = _root(tmp_path, "b", {"x": "hold ok unpacked"})
    assert describe([STATUS], before, after) is None  # a package changed: the delta tells
    held = _root(tmp_path, "c", {"x": "hold ok installed"})
    assert describe([STATUS, "var/lib/dpkg/info/x.list"], before, held) is None
    assert describe([STATUS], before, before) is None  # rewritten, nothing changed


def test_the_drift_name_puts_what_was_said_first() -> None:
    assert drift_name(["etc/motd"], ["hold x"]) == "drift: hold x, etc/motd"
    assert drift_name([], ["hold x"], more=True) == "drift: hold x (and more)"
    assert drift_name(["a", "b", "c", "d"]) == "drift: a, b, c (and more)"


def test_install_argv_makes_the_change_at_its_versions() -> None:
    apt = Apt()
    delta = PackageDelta(added=(("a", "1.0"), ("b", "2.0")), removed=(("c", "3"),))
    assert apt.install_argv(delta) == ["apt-get", "-y", "install", "a=1.0", "b=2.0", "c-"]
    down = PackageDelta(downgraded=(("v", "2.0", "1.0"),))
    assert apt.install_argv(down) == ["apt-get", "-y", "--allow-downgrades", "install", "v=1.0"]
    assert apt.install_argv(PackageDelta(added=(("a", "1.0 (unpacked)"),))) is None
    assert apt.install_argv(PackageDelta()) is None
    assert apt.replay_argv(["apt-get", "-y", "install", "a=1.0", "c-"]) is not None


def test_the_core_asks_each_manager_for_its_own_paths(tmp_path: Path) -> None:
    from ashcore.driftname import said_of

    before = _root(tmp_path, "a", {"x": "install ok installed"})
    after = _root(tmp_path, "b", {"x": "hold ok installed"})
    paths = ["etc/motd", STATUS, "var/lib/dpkg/status-old"]
    assert said_of(paths, before, after) == (["hold x"], ["etc/motd"])
    assert said_of(["etc/motd"], before, after) == ([], ["etc/motd"])
