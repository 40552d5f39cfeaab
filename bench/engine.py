"""Engine benchmark: the sqlite engine against raw sqlite3 at the same PRAGMAs, side by side.

    .venv/bin/python bench/engine.py            # full run (a few minutes)
    .venv/bin/python bench/engine.py --quick    # smoke run

Every workload runs `--repeat` times and reports the median. Baselines: raw sqlite3 from one
thread, and raw sqlite3 behind the same event-loop-to-thread hop the engine uses, so the
engine's own overhead per operation is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from measure import hop, run_tasks, run_threaded, table

from fdbsync.engine import Engine, Transaction, create_engine, pack

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")
VALUE = b"v" * 100
RANGE_ROWS = 100
PRELOAD = 10_000


def raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
    )
    return conn


def key(i: int) -> bytes:
    return pack(("bench", i))


# -- raw sqlite3 --------------------------------------------------------------------------
class Raw:
    """The baseline: the same work with plain sqlite3 calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = raw_connect(path)
        self.write_lock = threading.Lock()
        self.local = threading.local()

    def reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = raw_connect(self.path)
        return conn

    def commit(self, first: int, keys: int) -> None:
        with self.write_lock:
            self.writer.execute("BEGIN IMMEDIATE")
            for i in range(first, first + keys):
                self.writer.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key(i), VALUE))
            self.writer.execute("COMMIT")

    def get(self, i: int) -> None:
        self.reader().execute("SELECT value FROM kv WHERE key = ?", (key(i),)).fetchone()

    def get10(self, i: int) -> None:
        conn = self.reader()
        for j in range(10):
            conn.execute(
                "SELECT value FROM kv WHERE key = ?", (key((i + j * 997) % PRELOAD),)
            ).fetchone()

    def range(self, i: int) -> None:
        self.reader().execute(
            "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
            (key(i), key(i + RANGE_ROWS), RANGE_ROWS),
        ).fetchall()

    def preload(self) -> None:
        self.writer.execute("BEGIN")
        self.writer.executemany(
            "INSERT OR REPLACE INTO kv VALUES (?, ?)", ((key(i), VALUE) for i in range(PRELOAD))
        )
        self.writer.execute("COMMIT")


def engine_ops(engine: Engine) -> dict[str, Callable[[int], Awaitable[None]]]:
    async def commit1(i: int) -> None:
        tr = engine.create_transaction()
        tr.set(key(PRELOAD + i), VALUE)
        await tr.commit()

    async def commit10(i: int) -> None:
        tr = engine.create_transaction()
        for j in range(10):
            tr.set(key(PRELOAD + i * 10 + j), VALUE)
        await tr.commit()

    async def get(i: int) -> None:
        tr = engine.create_transaction()
        await tr.get(key(i % PRELOAD))
        tr.cancel()

    async def get10(i: int) -> None:
        tr = engine.create_transaction()
        await asyncio.gather(*(tr.get(key((i + j * 997) % PRELOAD)) for j in range(10)))
        tr.cancel()

    async def range_read(i: int) -> None:
        tr = engine.create_transaction()
        start = i % (PRELOAD - RANGE_ROWS)
        await tr.get_range(key(start), key(start + RANGE_ROWS)).to_list()
        tr.cancel()

    return {
        "commit1": commit1,
        "commit10": commit10,
        "get": get,
        "get10": get10,
        "range": range_read,
    }


def raw_fns(raw: Raw) -> dict[str, Callable[[int], None]]:
    return {
        "commit1": lambda i: raw.commit(PRELOAD + i, 1),
        "commit10": lambda i: raw.commit(PRELOAD + i * 10, 10),
        "get": lambda i: raw.get(i % PRELOAD),
        "get10": raw.get10,
        "range": lambda i: raw.range(i % (PRELOAD - RANGE_ROWS)),
    }


async def throughput(workdir: Path, counts: dict[str, int], repeat: int) -> list[list[str]]:
    rows: list[list[str]] = []
    results: dict[tuple[str, str], list[float]] = {}
    executor = ThreadPoolExecutor(8)
    for attempt in range(repeat):
        raw_path = workdir / f"raw{attempt}.db"
        raw = Raw(raw_path)
        raw.preload()
        fns = raw_fns(raw)
        async with create_engine(f"sqlite:///{workdir / f'engine{attempt}.db'}") as engine:

            async def preload(tr: Transaction) -> None:
                for i in range(PRELOAD):
                    tr.set(key(i), VALUE)

            await engine.transact(preload)
            ops = engine_ops(engine)
            for name, count in counts.items():
                record = results.setdefault
                record((name, "raw sqlite3, 1 thread"), []).append(run_threaded(fns[name], count))
                record((name, "raw + hop, 1 task"), []).append(
                    await run_tasks(hop(executor, fns[name]), count, 1)
                )
                record((name, "raw + hop, 32 tasks"), []).append(
                    await run_tasks(hop(executor, fns[name]), count, 32)
                )
                record((name, "engine, 1 task"), []).append(await run_tasks(ops[name], count, 1))
                record((name, "engine, 32 tasks"), []).append(await run_tasks(ops[name], count, 32))
        raw.writer.close()
    executor.shutdown()
    for name in counts:
        baseline = statistics.median(results[(name, "raw sqlite3, 1 thread")])
        for (workload, how), values in results.items():
            if workload != name:
                continue
            median = statistics.median(values)
            rows.append([name, how, f"{median:,.0f}", f"{median / baseline:.2f}"])
    return rows


# -- watch latency ------------------------------------------------------------------------
CHILD = """
import asyncio, sys, time
from fdbsync.engine import create_engine

async def main():
    async with create_engine({url!r}) as engine:
        print("ready", flush=True)
        for line in sys.stdin:
            tr = engine.create_transaction()
            tr.set({key!r}, str(time.time_ns()).encode())
            await tr.commit()
            print("done", flush=True)

asyncio.run(main())
"""


async def watch_latency(workdir: Path, samples: int) -> list[list[str]]:
    url = f"sqlite:///{workdir / 'watch.db'}"
    target = key(-1)
    rows: list[list[str]] = []
    async with create_engine(url) as engine:
        same: list[float] = []
        for _ in range(samples):
            tr = engine.create_transaction()
            watch = tr.watch(target)
            await tr.commit()
            writer = engine.create_transaction()
            writer.set(target, os.urandom(8))
            start = time.perf_counter()
            await writer.commit()
            await asyncio.wait_for(watch, 5)
            same.append((time.perf_counter() - start) * 1000)
        rows.append(["watch fire, same process", *summary(same)])

        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD.format(url=url, key=target),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin and child.stdout
        try:
            assert (await child.stdout.readline()).strip() == b"ready"
            cross: list[float] = []
            for _ in range(samples):
                tr = engine.create_transaction()
                watch = tr.watch(target)
                await tr.commit()
                child.stdin.write(b"go\n")
                await child.stdin.drain()
                await asyncio.wait_for(watch, 5)
                fired = time.time_ns()
                check = engine.create_transaction()
                written = int(await check.get(target) or b"0")
                check.cancel()
                cross.append((fired - written) / 1e6)
                await child.stdout.readline()
            rows.append(["watch fire, across processes", *summary(cross)])
        finally:
            child.kill()
            await child.wait()
    return rows


def summary(ms: list[float]) -> list[str]:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return [f"{statistics.median(ordered):.2f}", f"{p99:.2f}"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0
    counts = {
        name: max(32, int(n * scale))
        for name, n in {
            "commit1": 3000,
            "commit10": 1500,
            "get": 10000,
            "get10": 3000,
            "range": 3000,
        }.items()
    }
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="fdbsync-bench-") as tmp:
        rows = await throughput(Path(tmp), counts, repeat)
        print(f"Throughput, operations per second (median of {repeat}); ratio vs raw 1 thread\n")
        print(table(["workload", "how", "ops/s", "ratio"], rows))
        latency = await watch_latency(Path(tmp), 20 if args.quick else 200)
        print("\nWatch-fire latency, ms (from the writer's commit call to the watch firing)\n")
        print(table(["case", "p50", "p99"], latency))


if __name__ == "__main__":
    asyncio.run(main())
