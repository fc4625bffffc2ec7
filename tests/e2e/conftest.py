"""Fixtures of the end-to-end tier: the rig (one per session) and a fresh root per test.

    def test_x(root: Root) -> None:
        root.run(["apt-get", "install", "-y", "ashtest-a"])
        assert root.run(["dpkg-query", "-W", "ashtest-a"]).stdout

`root` is a writable snapshot of the golden, mounted at `root.path` with proc, sys, dev,
devpts, /tmp and /etc/mtab, after `ashctl setup` ran in it; `bare_root` is the same without
`ashctl setup`. Everything is unmounted and deleted afterwards, also when the test fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.e2e.command import RigError
from tests.e2e.rig import Rig, missing_tools, open_rig, unsupported
from tests.e2e.root import Root


def pytest_configure(config: pytest.Config) -> None:
    # All mounts of this session go into a mount namespace of its own: invisible to the host,
    # and gone with the process however it ends (look at them with `nsenter -t PID -m`).
    if os.geteuid() == 0:
        from tests.e2e.mounts import enter_private_namespace

        enter_private_namespace()


_figures: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _figures:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def rig(pytestconfig: pytest.Config) -> Iterator[Rig]:
    """The rig, built or reused; a failure to build it is an error of every e2e test."""
    if reason := unsupported():
        pytest.skip(reason)
    if missing := missing_tools():
        pytest.fail(
            f"the e2e rig could not be built: host tools missing: {' '.join(missing)} "
            "(run tests/host-deps.sh)",
            pytrace=False,
        )
    error: RigError | None = None
    started = time.monotonic()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():  # show the progress of a (long) build
            built = open_rig()
    except RigError as exc:
        error = exc
    if error is not None:
        pytest.fail(f"the e2e rig could not be built: {error}", pytrace=False)
    built_layers = ", ".join(f"{k} {v:.1f} s" for k, v in built.timings.items())
    _figures.append(
        f"e2e rig ({built.paths.dir}): ready in {time.monotonic() - started:.1f} s"
        f" ({'built: ' + built_layers if built_layers else 'all layers cached'})"
    )
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def bare_root(rig: Rig) -> Iterator[Root]:
    """A fresh root without `ashctl setup`: the package managers alone."""
    root = _open(rig)
    try:
        yield root
    finally:
        _close(root)


@pytest.fixture
def root(rig: Rig) -> Iterator[Root]:
    """A fresh root after `ashctl setup` (the store @ash beside it, the hooks installed)."""
    root = _open(rig)
    try:
        root.setup()
        yield root
    finally:
        _close(root)


@pytest.fixture
def rig_root_with_store(rig: Rig) -> Iterator[Root]:
    """A fresh root whose ash.toml puts the store at /.layers, then `ashctl setup`."""
    root = _open(rig)
    try:
        (root.path / "etc/ash").mkdir(parents=True, exist_ok=True)
        (root.path / "etc/ash/ash.toml").write_text('store = "/.layers"\n')
        root.setup()
        yield root
    finally:
        _close(root)


def _open(rig: Rig) -> Root:
    try:
        return rig.new_root()
    except RigError as exc:
        pytest.fail(f"the e2e rig could not give a root:\n{exc}", pytrace=False)


def _close(root: Root) -> None:
    try:
        root.close()
    except RigError as exc:
        pytest.fail(f"the e2e rig could not clean up {root.path}:\n{exc}", pytrace=False)
