"""Shared fixtures. Engine tests run against every engine the machine can reach."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fdbsync.engine import Engine, Limits, Transaction, create_engine

#: Names the cluster file of a throwaway FoundationDB cluster. Set, every engine-parametrized
#: test also runs on FoundationDB (the GitHub workflow sets it); each one clears the cluster's
#: whole keyspace before and after it runs.
FDB_CLUSTER_VAR = "FDBSYNC_TEST_FDB_CLUSTER"
FDB_SKIP_REASON = (
    f"FoundationDB engine: set {FDB_CLUSTER_VAR} to the cluster file of a throwaway cluster "
    "to run these cases on FoundationDB (the GitHub workflow does)"
)
SQLITE_ONLY_REASON = "FoundationDB engine: test_sqlite_*.py exercise the sqlite engine only"


def fdb_cluster_file() -> Path | None:
    path = os.environ.get(FDB_CLUSTER_VAR)
    return Path(path).resolve() if path else None


def engine_urls(tmp_path: Path) -> dict[str, str]:
    urls = {"sqlite": f"sqlite:///{tmp_path / 'engine.db'}"}
    cluster = fdb_cluster_file()
    if cluster is not None:
        urls["fdb"] = f"fdb://{cluster}"  # an absolute path: fdb:///etc/foundationdb/fdb.cluster
    return urls


ENGINE_KINDS = ["sqlite", "fdb"]


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "fdb":
        if fdb_cluster_file() is None:
            pytest.skip(FDB_SKIP_REASON)
        if request.module.__name__.rpartition(".")[2].startswith("test_sqlite_"):
            pytest.skip(SQLITE_ONLY_REASON)
    return kind


_wiper: Engine | None = None


async def wipe_fdb(url: str) -> None:
    """Clear the test cluster's whole keyspace (one engine kept open for it)."""
    global _wiper
    if _wiper is None:
        _wiper = create_engine(url)
    await _wiper.open()

    async def clear(tr: Transaction) -> None:
        tr.clear_range(b"", b"\xff")

    await _wiper.transact(clear, timeout=30)


@pytest.fixture
async def engine_url(engine_kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """The engine's URL: a fresh sqlite file, or the test cluster, empty before and after."""
    url = engine_urls(tmp_path)[engine_kind]
    if engine_kind == "fdb":
        await wipe_fdb(url)
    yield url
    if engine_kind == "fdb":
        await wipe_fdb(url)


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
