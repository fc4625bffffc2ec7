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
