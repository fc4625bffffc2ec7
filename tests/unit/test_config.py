from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ashcore import config
from ashcore.config import load_config, load_hook_config
from ashcore.errors import ConfigError


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
    return path


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("config files must be owned by root: this check runs as root")


def test_missing_or_comment_only_files_give_defaults(tmp_path: Path, as_root: None) -> None:
    assert load_config(str(tmp_path)).on_error == "abort"
    write(tmp_path, "etc/ash/ash.toml", "# on_error = 'warn'\n\n")
    assert load_config(str(tmp_path)).on_error == "abort"


def test_settings_are_read(tmp_path: Path, as_root: None) -> None:
    write(
        tmp_path,
        "etc/ash/ash.toml",
        'on_error = "warn"\nnoise = ["srv/cache"]\n[retention]\nkeep = 5\n',
    )
    config = load_config(str(tmp_path))
    assert config.on_error == "warn"
    assert "srv/cache" in config.noise and "var/log" in config.noise
    assert config.retention.keep == 5
    write(tmp_path, "etc/ash/hooks.d/apt.toml", 'enabled = false\nskip_packages = ["x*"]\n')
    hooks = load_hook_config(str(tmp_path), "apt")
    assert hooks.enabled is False and hooks.skip_packages == ("x*",)


def test_wrong_types_are_refused(tmp_path: Path, as_root: None) -> None:
    write(tmp_path, "etc/ash/hooks.d/apt.toml", 'enabled = "no"\n')
    with pytest.raises(ConfigError, match="'enabled' has the wrong type"):
        load_hook_config(str(tmp_path), "apt")


def test_unsafe_files_are_refused(tmp_path: Path, as_root: None) -> None:
    path = write(tmp_path, "etc/ash/ash.toml", 'on_error = "warn"\n')
    path.chmod(0o664)  # root's, but group-writable: this check alone can refuse it
    with pytest.raises(ConfigError, match="writable by group or others"):
        load_config(str(tmp_path))
    path.chmod(0o644)
    os.chown(path, 1, 1)  # safe modes, but not root's
    with pytest.raises(ConfigError, match="owned by uid 1, not root"):
        load_config(str(tmp_path))
    os.chown(path, 0, 0)
    assert load_config(str(tmp_path)).on_error == "warn"
    link = tmp_path / "etc/ash/hooks.d/apt.toml"
    link.parent.mkdir(parents=True)
    link.symlink_to(path)
    with pytest.raises(ConfigError):
        load_hook_config(str(tmp_path), "apt")


@pytest.mark.parametrize(
    ("section", "why"),
    [
        ('add = ["etc"]', "holds the system itself"),
        ('add = ["usr/local"]', "holds the system itself"),
        ('add = ["var/lib/dpkg"]', "a package manager's database"),
        ('add = ["var"]', "a package manager's database"),
        ('add = ["home/eve"]', "is inside 'home'"),
        ('add = [".ash"]', "holds the system itself"),
        ('add = ["/srv"]', "not a plain path"),
        ('add = ["srv/../etc"]', "not a plain path"),
        ('keep = ["srv"]', "unknown setting 'keep'"),
    ],
)
def test_data_places_that_are_not_users_data_are_refused(
    monkeypatch: pytest.MonkeyPatch, section: str, why: str
) -> None:
    monkeypatch.setattr(config, "_read_checked", lambda path: f"[data]\n{section}\n")
    with pytest.raises(ConfigError, match=re.escape(why)):
        config.load_config("/")


def test_data_places_default_and_change(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "home" in config.Config().data and "var/log" in config.Config().data
    text = '[data]\nadd = ["opt/saves"]\nremove = ["var/tmp", "srv"]\n'
    monkeypatch.setattr(config, "_read_checked", lambda path: text)
    data = config.load_config("/").data
    assert "opt/saves" in data and "var/tmp" not in data and "srv" not in data
