"""The engine benchmark still runs and reports every workload (its figures are not judged)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "engine.py"


@pytest.mark.slow
async def test_engine_benchmark_quick_run_reports_every_workload() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH),
        "--quick",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, stderr.decode()
    report = stdout.decode()
    for workload in ("commit1", "commit10", "get", "get10", "range"):
        for how in ("raw sqlite3, 1 thread", "raw + hop, 32 tasks", "engine, 32 tasks"):
            assert re.search(rf"\| {workload} \| {re.escape(how)} \| [\d,]+ \| [\d.]+ \|", report)
    for case in ("same process", "across processes"):
        assert re.search(rf"\| watch fire, {case} \| [\d.]+ \| [\d.]+ \|", report)
