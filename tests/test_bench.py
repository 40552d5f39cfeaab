"""The benchmarks still run and report every workload (their figures are not judged)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "engine.py"
REPO_BENCH = BENCH.with_name("repo.py")
SYNC_BENCH = BENCH.with_name("sync.py")
MIGRATE_BENCH = BENCH.with_name("migrate.py")


async def quick_run(bench: Path) -> str:
    """What `bench --quick` prints (it must exit 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(bench),
        "--quick",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


@pytest.mark.slow
async def test_engine_benchmark_quick_run_reports_every_workload() -> None:
    report = await quick_run(BENCH)
    for workload in ("commit1", "commit10", "get", "get10", "range"):
        for how in ("raw sqlite3, 1 thread", "raw + hop, 32 tasks", "engine, 32 tasks"):
            assert re.search(rf"\| {workload} \| {re.escape(how)} \| [\d,]+ \| [\d.]+ \|", report)
    for case in ("same process", "across processes"):
        assert re.search(rf"\| watch fire, {case} \| [\d.]+ \| [\d.]+ \|", report)


@pytest.mark.slow
async def test_repo_benchmark_quick_run_reports_every_workload() -> None:
    report = await quick_run(REPO_BENCH)
    for workload in ("insert", "get", "all_by"):
        assert re.search(
            rf"\| {workload} \| raw sqlite3, 1 thread \| [\d,]+ \| 1\.00 \| - \|", report
        )
        for how in (
            "raw + hop, 1 task",
            "raw + hop, 32 tasks",
            "fdbsync, 1 task",
            "fdbsync, 32 tasks",
        ):
            row = rf"\| {workload} \| {re.escape(how)} \| [\d,]+ \| [\d.]+ \| [\d.]+ \|"
            assert re.search(row, report)


@pytest.mark.slow
async def test_sync_benchmark_quick_run_reports_every_row() -> None:
    report = await quick_run(SYNC_BENCH)
    number, ms = r"[\d,]+", r"-?[\d.]+"
    for scenario in ("collection write", "record write"):
        assert f"### {scenario}" in report
        for design in ("fdbsync", "naive"):
            counts = rf"{number} of {number} \| {number} \| {number}"
            assert re.search(rf"\| {design} \| {counts} \| ({ms} \| ){{3}}[\d.]+ \|", report)
            retried = "-" if design == "fdbsync" else number
            row = rf"\| {design} \| [\d.]+ \| ({ms} \| ){{3}}\d+ \| \d+ \| {retried} \|"
            assert re.search(row, report)
    for design in ("fdbsync", "naive"):
        for kind in ("collection", "record", "all, after a collection write"):
            row = rf"\| {design} \| {re.escape(kind)} \| {number} \| [\d.]+ \| ([\d.]+|-) \|"
            assert re.search(row, report)
        assert re.search(rf"\| {design} \| {number} \| [\d.]+ \|", report)  # setup
    goals = re.findall(r"^\| (.+) \| (met|missed) \|$", report, re.MULTILINE)
    assert len(goals) == 4


@pytest.mark.slow
async def test_migrate_benchmark_quick_run_reports_both_builds() -> None:
    report = await quick_run(MIGRATE_BENCH)
    assert re.search(r"\| raw sqlite3 CREATE INDEX \| [\d,]+ \| 1\.00 \|", report)
    assert re.search(
        r"\| fdbsync build_indexes \(online, 1,000-key batches\) \| [\d,]+ \| [\d.]+ \|", report
    )


@pytest.mark.slow
async def test_live_benchmark_quick_run_reports_every_table() -> None:
    report = await quick_run(BENCH.with_name("live.py"))
    number, ms = r"[\d,]+", r"-?[\d.]+"
    for n in ("20", "60"):
        for design in ("floor", "live"):
            renders = r"\d+" if design == "live" else "-"
            latency = rf"\| {n} \| {design} \| ({ms} \| ){{3}}[\d.]+ \| ({ms} \| ){{3}}"
            latency += rf"\d+ \(\d+\) \| {renders} \| {ms} \|"
            assert re.search(latency, report), (n, design)
            idle = rf"\| {n} \| {design} \| ([\d.]+ \| ){{4}}{ms} \| ({ms}|-) \| {ms} \| -?\d+ \|"
            assert re.search(idle, report), (n, design)
        for kind in ("fragment", "page"):
            poll = rf"\| {n} \| {kind} \| {number} of {number} \| ({ms} \| ){{5}}"
            assert re.search(poll + rf"{number} of {number} \|", report), (n, kind)
    goals = re.findall(r"^\| (.+) \| (met|missed|reported) \|$", report, re.MULTILINE)
    assert any(goal.startswith("memory per live page") for goal, _ in goals)
