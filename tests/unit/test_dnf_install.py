"""The dnf installer face writes its hook files into a root (a temp dir: no root needed)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from ashplugins.dnf import install

ACTIONS = "etc/dnf/libdnf5-plugins/actions.d/ashlayers.actions"
DNF4_PLUGIN = "usr/lib/python3/dist-packages/dnf-plugins/ashlayers.py"
DNF4_CONF = "etc/dnf/plugins/ashlayers.conf"
LAUNCHER = "usr/libexec/ashlayers/dnf5-hook"
HOOK_CONFIG = "etc/ash/hooks.d/dnf.toml"
CALLBACKS = {"pre_transaction", "post_transaction"}
VARIABLES = {"pid", "conf.installroot", "conf.transaction_history_dir"}


def _dnf5(root: Path) -> Path:
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/dnf5").write_text("")
    (root / "etc/dnf/libdnf5-plugins").mkdir(parents=True, exist_ok=True)
    (root / "etc/dnf/libdnf5-plugins/actions.conf").write_text("[main]\nname = actions\n")
    return root


def _dnf4(root: Path, packages: str = "usr/lib/python3/dist-packages") -> Path:
    (root / packages / "dnf").mkdir(parents=True)
    (root / packages / "dnf/__init__.py").write_text("")
    return root


def test_detect(tmp_path: Path) -> None:
    assert not install.detect(str(tmp_path))
    assert install.detect(str(_dnf5(tmp_path / "a")))
    assert install.detect(str(_dnf4(tmp_path / "b")))
    assert install.detect(str(_dnf4(tmp_path / "c", "usr/lib/python3.13/site-packages")))


def test_install_both_and_idempotent(tmp_path: Path) -> None:
    root = _dnf4(_dnf5(tmp_path))
    written = install.install(str(root))
    assert sorted(written) == sorted(
        ["/" + ACTIONS, "/" + LAUNCHER, "/" + DNF4_PLUGIN, "/" + DNF4_CONF, "/" + HOOK_CONFIG]
    )
    assert "# enabled = true" in (root / HOOK_CONFIG).read_text()
    for path in (ACTIONS, DNF4_PLUGIN, DNF4_CONF):
        assert (root / path).stat().st_mode & 0o777 == 0o644
    assert (root / LAUNCHER).stat().st_mode & 0o777 == 0o755
    stamp = (root / ACTIONS).stat().st_mtime_ns
    assert install.install(str(root)) == written
    assert (root / ACTIONS).stat().st_mtime_ns == stamp
    assert sorted(install.uninstall(str(root))) == sorted(set(written) - {"/" + HOOK_CONFIG})
    assert (root / HOOK_CONFIG).exists()  # the user's settings stay
    assert not any((root / p).exists() for p in (ACTIONS, LAUNCHER, DNF4_PLUGIN, DNF4_CONF))
    assert install.uninstall(str(root)) == []


def test_install_dnf5_only(tmp_path: Path) -> None:
    root = _dnf5(tmp_path)
    assert install.install(str(root)) == ["/" + LAUNCHER, "/" + ACTIONS, "/" + HOOK_CONFIG]
    assert not (root / "etc/dnf/plugins").exists()


def test_dnf4_plugin_goes_beside_the_dnf_package(tmp_path: Path) -> None:
    root = _dnf4(tmp_path, "usr/lib/python3.13/site-packages")
    assert install.install(str(root)) == [
        "/usr/lib/python3.13/site-packages/dnf-plugins/ashlayers.py",
        "/" + DNF4_CONF,
        "/" + HOOK_CONFIG,
    ]


def test_install_mends_a_changed_file(tmp_path: Path) -> None:
    root = _dnf5(tmp_path)
    install.install(str(root))
    (root / ACTIONS).write_text("# edited\n")
    install.install(str(root))
    assert "dnf5-hook begin" in (root / ACTIONS).read_text()
    (root / LAUNCHER).chmod(0o644)
    install.install(str(root))
    assert (root / LAUNCHER).stat().st_mode & 0o777 == 0o755


def _split_command(command: str) -> list[str]:
    """libdnf5's split of an action's command: spaces separate, a backslash escapes."""
    words, word, escape = [], "", False
    for char in command:
        if escape:
            word, escape = word + "\\" + char, False
        elif char == "\\":
            escape = True
        elif char == " ":
            if word:
                words.append(word)
            word = ""
        else:
            word += char
    return [*words, word] if word else words


def _actions() -> list[list[str]]:
    text = (Path(install.__file__).parent / "files/ashlayers.actions").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    # callback:package_filter:direction:options:command (the command may hold colons)
    return [line.split(":", 4) for line in lines]


def test_actions_lines_have_the_libdnf5_format() -> None:
    actions = _actions()
    assert [a[0] for a in actions] == ["pre_transaction", "post_transaction"]
    for callback, package_filter, direction, options, command in actions:
        assert callback in CALLBACKS
        assert package_filter == "" and direction == ""  # once per transaction
        # json: the hook asks libdnf5 for the transaction and the installed set, and stops
        # dnf5 with `stop`; no raise_error=1, so a leftover hook never breaks dnf5.
        assert options.split() == ["mode=json"]
        words = _split_command(command)
        assert words[0] == "/" + LAUNCHER
        assert words[1] == ("begin" if callback == "pre_transaction" else "commit")
        assert all(re.fullmatch(r"\$\{[a-z_.]+\}", w) for w in words[2:])
        assert words[2:] == ["${conf.installroot}", "${pid}", "${conf.transaction_history_dir}"]
        assert {w[2:-1] for w in words[2:]} == VARIABLES


def test_launcher_runs_the_dnf5_hook_module() -> None:
    text = (Path(install.__file__).parent / "files/dnf5-hook").read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "from ashplugins.dnf.dnf5 import main" in text
    assert importlib.util.find_spec("ashplugins.dnf.dnf5") is not None
    assert "sys.exit(0)  # ashlayers is gone" in text


def test_dnf4_shim_names_the_plugin() -> None:
    shim = (Path(install.__file__).parent / "files/ashlayers.py").read_text()
    assert "from ashplugins.dnf.dnf4 import AshLayers" in shim
    conf = (Path(install.__file__).parent / "files/ashlayers.conf").read_text()
    assert re.search(r"^enabled\s*=\s*1$", conf, re.M)


def test_dnf4_plugin_class() -> None:
    pytest.importorskip("dnf", reason="dnf's Python package is not installed here")
    from ashplugins.dnf.dnf4 import AshLayers

    assert AshLayers.name == "ashlayers"
