"""Shared fixtures: the real models of the shared data are read in place, never copied; a run without
the data ends by saying how many tests skipped for want of it and how to point at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_data import ABSENT, MODELS, SHARED, SHARED_ENV, require


@pytest.fixture(scope="session")
def shared_models() -> Path:
    require(MODELS)
    return MODELS


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line when tests skipped for want of the shared data: how many, where it was looked for, and
    how to point at it."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if ABSENT in _reason(r)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: the shared data (models/, edgetpu-measurements/, "
            f"edgetpu-compiler-logs/) is not at {SHARED}; set {SHARED_ENV}=/path/to/shared to run them",
            yellow=True,
            bold=True,
        )
