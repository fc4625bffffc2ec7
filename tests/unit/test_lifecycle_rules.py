from __future__ import annotations

import pytest

from ashcore.config import HookConfig, default_noise
from ashcore.drift import noise_filter
from ashcore.errors import UsageError
from ashcore.lifecycle import Operation, skip_reason
from ashcore.model import Layer, Status
from ashcore.naming import auto_name, check_name
from ashcore.prune import by_rules, plan, protected, total_size


def test_noise_is_not_drift_but_a_hand_edit_is() -> None:
    paths = {
        "var/log/syslog",
        "var",
        "var/lib/pacman/sync/core.db",
        "tmp/x",
        "etc/motd",
        "var/lib/pacman/db.lck",
        "usr/bin/tool",
    }
    assert noise_filter(paths, default_noise()) == ["etc/motd", "usr/bin/tool"]
    assert noise_filter({"opt/a/b.log"}, ("opt/*/*.log",)) == []


def test_names() -> None:
    assert auto_name(("/usr/bin/apt", "install", "htop")) == "apt install htop"
    assert auto_name(("dpkg", "-i", "./foo bar.deb")) == "dpkg -i './foo bar.deb'"
    assert len(auto_name(("x",) * 500)) == 200
    assert check_name("my layer/with ..") == "my layer/with .."
    for bad in ("a\nb", "x" * 201, "17", ""):
        with pytest.raises(UsageError):
            check_name(bad)


def op(*argv: str, targets: tuple[str, ...] = ()) -> Operation:
    return Operation(origin="apt", manager="apt", argv=argv, owner="1:1", targets=targets)


def test_skip_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASH_SKIP", raising=False)
    assert skip_reason(op("apt", "install", "x"), HookConfig()) is None
    assert skip_reason(op("apt"), HookConfig(enabled=False)) is not None
    hooks = HookConfig(skip_packages=("linux-image-*",), skip_commands=("autoremove",))
    assert skip_reason(op("apt", "install", targets=("linux-image-6",)), hooks) is not None
    assert skip_reason(op("apt", "autoremove"), hooks) is not None
    assert skip_reason(op("apt", "install", targets=("vim",)), hooks) is None
    monkeypatch.setenv("ASH_SKIP", "1")
    assert skip_reason(op("apt"), HookConfig()) == "ASH_SKIP is set"


def layer(i: int, parent: int | None, pinned: bool = False) -> Layer:
    return Layer(
        i, f"l{i}", parent, None, "", Status.COMMITTED, "2026-01-01T00:00:00+0000", pinned=pinned
    )


def test_prune_may_take_any_layer_but_heads_pins_and_the_base() -> None:
    # 1 - 2 - 3 - 4 (head)      2 - 5 - 6      1 - 7 (pinned)
    layers = [
        layer(1, None),
        layer(2, 1),
        layer(3, 2),
        layer(4, 3),
        layer(5, 2),
        layer(6, 5),
        layer(7, 1, pinned=True),
    ]
    assert protected(layers, [4]) == {1, 4, 7}
    assert protected(layers, [4], keep_base=False) == {4, 7}

    def ids(found: list[Layer]) -> list[int]:
        return [x.id for x in found]

    # Inner layers go too: a snapshot stands alone, their children keep theirs.
    assert ids(by_rules(layers, [4], keep=0, keep_days=None)) == [2, 3, 5, 6]
    assert ids(by_rules(layers, [4], keep=3, keep_days=None)) == [2, 3]  # 5, 6, 7 newest
    assert by_rules(layers, [4], keep=10, keep_days=None) == []
    assert ids(by_rules(layers, [4], keep=0, keep_days=None, keep_base=False)) == [1, 2, 3, 5, 6]
    assert ids(by_rules(layers, [4], keep=None, keep_days=36500)) == []  # all young enough
    assert ids(by_rules(layers, [4], keep=None, keep_days=1)) == [2, 3, 5, 6]  # all of 2026-01
    # A pruned layer has no snapshot to take, and does not count among the newest kept.
    layers[5] = Layer(6, "l6", 5, None, "", Status.PRUNED, "2026-01-01T00:00:00+0000")
    assert ids(by_rules(layers, [4], keep=0, keep_days=None)) == [2, 3, 5]
    assert ids(by_rules(layers, [4], keep=2, keep_days=None)) == [2, 3]  # 5 and 7 newest
    assert total_size([Layer(9, "s", 1, None, "", Status.COMMITTED, "", size=5)]) == 5
    with pytest.raises(UsageError):
        plan(None, keep=None, keep_days=None, max_size=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "words",
    [
        ["apt-get", "install", "-y", "htop"],
        ["dpkg", "-i", "./foo bar.deb"],
        ["echo", "", "it's", 'say "hi"', "$HOME", "a;b", "*", "~x", "100%", "k=v,w:x@y+z"],
        ["naïve", "tab\there", "new\nline", "é", "_under", "-"],
    ],
)
def test_shell_join_quotes_as_shlex_does(words: list[str]) -> None:
    import shlex

    from ashcore.naming import shell_join

    assert shell_join(words) == shlex.join(words)
    assert shlex.split(shell_join(words)) == words


def test_glob_match_agrees_with_fnmatch() -> None:
    from fnmatch import fnmatchcase

    from ashcore.naming import glob_match

    patterns = [
        "*/__pycache__",
        "*/__pycache__/*",
        "var/log",
        "*",
        "**",
        "a*b*c",
        "*a*a*",
        "usr/*/x*",
        "*.pyc",
        "ab",
        "",
        "?x",
        "[ab]*",
    ]
    names = [
        "",
        "a",
        "ab",
        "abc",
        "aabbcc",
        "aa",
        "aXa",
        "var/log",
        "var/log/x",
        "usr/lib/__pycache__",
        "usr/lib/__pycache__/m.pyc",
        "__pycache__",
        "usr/share/x1",
        "usr/x",
        "bx",
        "m.pyc",
    ]
    for pattern in patterns:
        for name in names:
            assert glob_match(pattern, name) == fnmatchcase(name, pattern), (pattern, name)


def test_a_front_ends_late_views_and_stamps_are_noise() -> None:
    """unattended-upgrade writes what it kept back as it ends, apt's periodic jobs their
    stamps: the next operation must not keep them as drift. dpkg's state stays state."""
    paths = {
        "var/lib/unattended-upgrades/kept-back",
        "var/lib/apt/periodic/unattended-upgrades-stamp",
        "var/lib/apt/periodic/upgrade-stamp",
        "var/lib/dpkg/status",
    }
    assert noise_filter(paths, default_noise()) == ["var/lib/dpkg/status"]
