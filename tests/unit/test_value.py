from __future__ import annotations

import subprocess
import sys

import pytest

from ashcore.model import Layer, PackageDelta, Status


def test_values_are_immutable_and_compared_by_value() -> None:
    a = Layer(1, "x", None, None, "", Status.COMMITTED, "t")
    b = Layer(1, "x", None, None, "", Status.COMMITTED, "t", packages=PackageDelta())
    assert a == b and hash(a) == hash(b)
    assert a != a.replace(name="y")
    assert a.replace(name="y").name == "y"
    with pytest.raises(AttributeError):
        a.name = "z"  # type: ignore[misc]
    assert "name='x'" in repr(a)


HOOK_MODULES = (
    "ashcore.hook",
    "ashplugins.apt.hook",
    "ashplugins.pacman.hook",
    "ashplugins.dnf.dnf5",
)


@pytest.mark.parametrize("module", HOOK_MODULES)
def test_the_hook_path_imports_little(module: str) -> None:
    """Every package operation imports these: none may pull in the heavy modules."""
    code = (
        f"import sys, {module};"
        "heavy = {'typing', 'logging', 'dataclasses', 'inspect', 'subprocess', 'tomllib'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
