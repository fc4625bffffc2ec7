from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
def test_the_hook_path_imports_little(module: str, tmp_path: Path) -> None:
    """Every package operation imports these: none may pull in the heavy modules. Run as the
    hooks start Python: -I -S, the packages' folders on the path by hand (no .pth file runs,
    so the package `ashplugins` is a link to plugins/ here, as an install lays it out)."""
    top = Path(__file__).resolve().parents[2]
    (tmp_path / "ashplugins").symlink_to(top / "plugins")
    path = [str(top), str(tmp_path)] + [p for p in sys.path if "-packages" in p]
    code = (
        f"import sys; sys.path[:0] = {path!r}; loaded = set(sys.modules);"
        f"import ashcore.clock, ashcore.linger, {module};"
        "heavy = {'typing', 'logging', 'dataclasses', 'inspect', 'subprocess', 'tomllib',"
        " 'enum', 're', 'json', 'signal'};"
        "print(sorted(heavy & (set(sys.modules) - loaded)))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_seal_reads_back_as_written() -> None:
    from ashcore.model import Seal

    for failed in (None, True, False):
        seal = Seal((12345, 1795985979.123456), failed)
        back = Seal.from_text(seal.to_text())
        assert back is not None and (back.checked, back.failed) == (seal.checked, failed)


def test_a_process_start_is_told_on_the_ctime_clock() -> None:
    import os
    import time

    from ashcore.process import owner_of, started_at

    started = started_at(owner_of(os.getpid()))
    assert started is not None and started <= time.time()
    assert started_at("1234:0") is None
