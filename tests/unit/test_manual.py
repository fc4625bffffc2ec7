"""The manual pages and completions (ashpkg/) name every command, option and setting that the
parser and the config code know, and the completions work in bash and parse in zsh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ashcore import config
from ashcore.cli import _parser
from ashpkg import completion, manual


def _every_option() -> list[tuple[str, str]]:
    """(command or '', option string or positional metavar) of the whole parser."""
    found = [("", o) for a in manual.options(_parser()) for o in a.option_strings]
    for name, (child, _) in manual.commands().items():
        for action in manual.options(child):
            if action.dest == "help":  # every command's -h: said once, under OPTIONS
                continue
            found += [(name, o) for o in action.option_strings] or [(name, manual.metavar(action))]
    return found


def test_ashctl_page_names_every_command_and_option() -> None:
    page = manual.ashctl_page()
    sections = page.split("\n.SS ")
    by_command = {s.split("\n", 1)[0]: s for s in sections[1:]}
    assert set(by_command) == set(manual.commands())
    for command, option in _every_option():
        where = by_command[command] if command else sections[0]
        assert manual.roff(option) in where, f"ashctl {command} {option} is not in ashctl(8)"


def test_ash_toml_page_names_every_setting_the_config_code_knows() -> None:
    documented = set(manual.SETTINGS) | {f"retention.{k}" for k in manual.RETENTION}
    assert documented == manual.config_keys()
    assert set(manual.HOOK_SETTINGS) == manual.hook_keys()
    page = manual.ash_toml_page()
    for key in [*documented, *manual.HOOK_SETTINGS]:
        assert f"\\fB{manual.roff(key)}\\fR" in page, f"{key} is not in ash.toml(5)"


def test_the_config_code_accepts_every_documented_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (
        'store = "/.ash"\non_error = "warn"\nlock_timeout = 5\nnoise = ["srv"]\n'
        'lock_files = ["x.lck"]\nboot_entries = 3\n'
        '[data]\nadd = ["srv/www"]\nremove = ["srv"]\n'
        "[retention]\nkeep = 1\nkeep_days = 2\nkeep_base = false\n"
        'max_size = "1G"\nwarn_free = "1M"\n'
        '[fleet]\ntrusted_keys = ["/etc/ash/fleet.gpg"]\n'
    )
    hooks = 'enabled = false\nskip_packages = ["a*"]\nskip_commands = ["b"]\n'
    monkeypatch.setattr(config, "_read_checked", lambda path: hooks if "hooks.d" in path else text)
    loaded = config.load_config("/")
    assert loaded.on_error == "warn" and loaded.retention.warn_free == 1 << 20
    assert "srv/www" in loaded.data and "srv" not in loaded.data and "home" in loaded.data
    assert config.load_hook_config("/", "apt").skip_commands == ("b",)
    assert loaded.trusted_keys == ("/etc/ash/fleet.gpg",)
    for key in manual.config_keys():  # each key of the example is one the code reads
        assert key.split(".")[-1] in text


def test_every_page_is_valid_roff() -> None:
    if shutil.which("groff") is None and shutil.which("mandoc") is None:
        pytest.skip("neither groff nor mandoc is installed")
    for name, make in manual.PAGES.items():
        argv = ["groff", "-man", "-ww", "-z"] if shutil.which("groff") else ["mandoc", "-Tlint"]
        proc = subprocess.run(argv, input=make(), capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr.strip(), f"{name}: {proc.stderr}"


def test_completions_name_every_command_and_option() -> None:
    scripts = {"bash": completion.bash(), "zsh": completion.zsh()}
    for shell, script in scripts.items():
        for command in manual.commands():
            assert command in script, f"{shell} completion misses {command}"
        for _, option in _every_option():
            if option.startswith("-") and " " not in option:
                assert option in script, f"{shell} completion misses {option}"


def _fake_ashctl(tmp_path: Path) -> dict[str, str]:
    """An `ashctl` on PATH that answers `list --json` with two layers and logs its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "ashctl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" > {tmp_path}/argv\n'
        """echo '[{"id":1,"name":"base"},{"id":12,"name":"apt install htop"}]'\n"""
    )
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _complete_bash(tmp_path: Path, line: str) -> list[str]:
    script = tmp_path / "ashctl.bash"
    script.write_text(completion.bash())
    words = line.split(" ")
    code = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_ashctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "-c", code], capture_output=True, text=True, env=_fake_ashctl(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


def test_bash_completes_commands_options_and_layers(tmp_path: Path) -> None:
    assert _complete_bash(tmp_path, "ashctl ro") == ["rollback"]
    assert _complete_bash(tmp_path, "ashctl prune --k") == ["--keep", "--keep-days"]
    assert _complete_bash(tmp_path, "ashctl --root /mnt show ") == [
        "1",
        "base",
        "12",
        "apt\\ install\\ htop",
    ]
    assert (tmp_path / "argv").read_text().split() == ["--root", "/mnt", "list", "--json"]
    assert _complete_bash(tmp_path, "ashctl rebase 1 --onto a") == ["apt\\ install\\ htop"]


def test_zsh_completion_parses() -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (tests/host-deps.sh installs it)")
    proc = subprocess.run(["zsh", "-n"], input=completion.zsh(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_metavar_has_a_kind_to_complete() -> None:
    for name, (child, _) in manual.commands().items():
        for action in manual.options(child):
            if manual.takes_value(action):
                assert manual.metavar(action) in completion.KINDS, f"{name}: {action}"
