"""What setup fills into the hook files: the store's path and the package's folder."""

from __future__ import annotations

import os
from pathlib import Path

import ashcore
from ashcore.launcher import fill, package_folder

FOLDER = os.path.dirname(os.path.dirname(os.path.realpath(ashcore.__file__)))


def test_fill_names_the_configured_store_and_the_package_folder(tmp_path: Path) -> None:
    (tmp_path / "etc/ash").mkdir(parents=True)
    (tmp_path / "etc/ash/ash.toml").write_text('store = "/.layers/"\n')
    os.chmod(tmp_path / "etc/ash/ash.toml", 0o644)
    if os.geteuid() != 0:  # config files must be root's; a user's run reads the default
        (tmp_path / "etc/ash/ash.toml").unlink()
    text = fill(b"ash-commit @ASH_STORE@ || exec x\npath = '@ASH_PYTHONPATH@'\n", str(tmp_path))
    store = b"/.layers" if os.geteuid() == 0 else b"/.ash"
    assert text == b"ash-commit " + store + b" || exec x\npath = ''\n"  # outside that root


def test_the_package_folder_is_seen_from_the_root() -> None:
    assert package_folder("/") == FOLDER
    parent = os.path.dirname(FOLDER)
    assert package_folder(parent) == "/" + os.path.basename(FOLDER)


def test_every_shipped_template_has_only_known_marks() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in [*root.glob("plugins/*/files/*"), *root.glob("ashcore/files/*")]:
        text = path.read_text()
        left = text.replace("@ASH_STORE@", "").replace("@ASH_PYTHONPATH@", "")
        assert "@ASH_" not in left, path
