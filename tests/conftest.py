"""Rules shared by every tier: the btrfs and e2e tiers need root, and CI never skips them."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

ROOT_TIERS = ("btrfs", "e2e")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _tier(item: pytest.Item) -> str | None:
    return next((m for m in ROOT_TIERS if item.get_closest_marker(m)), None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    tier = _tier(item)
    if tier and os.geteuid() != 0:
        pytest.skip(f"the {tier} tier needs root")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """With CI=true any skipped test is a failure: CI must not pass by skipping. (Every tier
    can run on CI's machine: tests/host-deps.sh installs what the unit tier imports too.)"""
    report = yield
    tier = _tier(item) or "unit"
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"a {tier} test was skipped, which CI does not allow: {why}"
    return report
