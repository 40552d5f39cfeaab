"""Shared fixtures. Engine tests run against every engine the machine can reach."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fdbsync.engine import Engine, Limits, create_engine


def engine_urls(tmp_path: Path) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp_path / 'engine.db'}"}


ENGINE_KINDS = ["sqlite", "fdb"]


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "fdb" and not os.environ.get("FDBSYNC_FDB_CLUSTER_FILE"):
        pytest.skip("FoundationDB engine: no cluster configured (set FDBSYNC_FDB_CLUSTER_FILE)")
    if kind == "fdb":
        pytest.skip("FoundationDB engine: not implemented yet (a later issue)")
    return kind


@pytest.fixture
def engine_url(engine_kind: str, tmp_path: Path) -> str:
    return engine_urls(tmp_path)[engine_kind]


@pytest.fixture
def limits() -> Limits:
    """Override in a test module to run its engine with other limits."""
    return Limits()


@pytest.fixture
async def engine(engine_url: str, limits: Limits) -> AsyncIterator[Engine]:
    async with create_engine(engine_url, limits=limits) as opened:
        yield opened


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each skip reason once, with its count (the per-test list is long and says the same)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            reason = report.longrepr[2].removeprefix("Skipped: ")
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skip reasons")
        for reason, count in sorted(reasons.items()):
            terminalreporter.line(f"{count} skipped: {reason}")
