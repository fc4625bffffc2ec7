"""The style gates run inside the suite: mypy strict and ruff on the shipped code (and on
tests/registry.py, the registry rig every tier imports)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).parents[2]


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run tests/host-deps.sh")
    return found


def test_ruff() -> None:
    result = subprocess.run(
        [tool("ruff"), "check", "ashcore", "plugins", "ashpkg", "tests/registry.py"],
        cwd=TOP,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = subprocess.run(
        [tool("mypy"), "--no-error-summary"], cwd=TOP, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_core_never_imports_a_managers_bindings() -> None:
    code = (
        "import sys, ashcore.cli, ashcore.hook, ashcore.setup, ashcore.doctor, ashcore.diff;"
        "bad = {'apt_pkg', 'apt', 'libdnf5', 'rpm', 'dnf', 'pyalpm'} & set(sys.modules);"
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=TOP, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_python_package_is_installed() -> None:
    """pyproject lists its packages by hand: a new one left out installs an ashctl that cannot
    import itself (ashcore.fleet once was)."""
    import tomllib

    config = tomllib.loads((TOP / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {"ashcore": TOP / "ashcore"} | {
        name: TOP / path for name, path in config["package-dir"].items()
    }
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                parts = init.parent.relative_to(folder).parts
                found.add(".".join((name, *parts)))
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
