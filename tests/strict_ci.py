"""Strict CI: with CI=true, a test that would skip (Chromium, Slurm, a daemon, a data set or a package missing) fails
instead, its skip reason in the failure, so that a broken install never leaves CI green. Tests marked `gpu` are the
only ones that may still skip. Loaded by conftest.py (its hooks are imported there), or alone with `-p strict_ci`."""
from __future__ import annotations

import os

import pytest

ALLOWED = "gpu"  # the marker of the only tests that may skip under CI=true (make gpu-check runs them)


def strict() -> bool:
    return os.environ.get("CI") == "true"


def _reason(longrepr) -> str:
    """A skip's reason: pytest keeps (file, line, 'Skipped: reason') for a skip."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _failure(reason: str) -> str:
    return f"skipped under CI=true, where only tests marked '{ALLOWED}' may skip; install what it needs: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (strict() and report.skipped and not hasattr(report, "wasxfail")
            and item.get_closest_marker(ALLOWED) is None):
        report.outcome = "failed"
        report.longrepr = _failure(_reason(report.longrepr))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped as a whole (pytest.importorskip, a module-level skip) fails to collect instead."""
    outcome = yield
    report = outcome.get_result()
    if strict() and report.outcome == "skipped":
        report.outcome = "failed"
        report.longrepr = _failure(_reason(report.longrepr))
