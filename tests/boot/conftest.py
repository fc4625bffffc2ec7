"""Fixtures of the boot tier: the cached disk image (one per session) and a VM on it.

A machine that cannot build the image or start qemu fails these tests with the reason; only
a non-root run is skipped (tests/conftest.py), and CI allows no skip.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot import image
from tests.boot.vm import VM, VMError
from tests.e2e.command import RigError

_figures: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _figures:
        terminalreporter.write_line(line)


def figure(line: str) -> None:
    """A line for the session's summary (timings of the tier)."""
    _figures.append(f"boot tier: {line}")


@pytest.fixture(scope="session")
def boot_image(pytestconfig: pytest.Config) -> Path:
    """The disk image, built or reused; a failure to build it fails every boot test."""
    started = time.monotonic()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    error: RigError | None = None
    try:
        with capture.global_and_fixture_disabled():
            built = image.build()
    except RigError as exc:
        error = exc
    if error is not None:
        pytest.fail(f"the boot image could not be built: {error}", pytrace=False)
    done = ", ".join(f"{k} {v:.1f} s" for k, v in built.timings.items()) or "cached"
    figure(f"image {built.path} ready in {time.monotonic() - started:.1f} s ({done})")
    return built.path


@pytest.fixture(scope="module")
def vm(boot_image: Path) -> Iterator[VM]:
    """A booted VM on an overlay of the image; killed, and its overlay deleted, afterwards
    (its console.log stays in the run dir until the next session)."""
    for old in image.boot_dir().glob("run-*"):  # earlier sessions' console logs
        shutil.rmtree(old, ignore_errors=True)
    workdir = image.boot_dir() / f"run-{os.getpid()}"
    machine = VM(boot_image, workdir)
    try:
        try:
            boot = machine.boot()
        except VMError as exc:
            pytest.fail(f"the VM did not boot: {exc}", pytrace=False)
        figure(f"first boot to the console in {boot.seconds:.1f} s (guest uptime {boot.uptime} s)")
        yield machine
    finally:
        machine.close()
        machine.overlay.unlink(missing_ok=True)
