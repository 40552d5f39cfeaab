"""Data-layer benchmark: Repo inserts, gets and all_by against raw sqlite3 doing the same work.

    .venv/bin/python bench/repo.py                    # full run (about a minute)
    .venv/bin/python bench/repo.py --quick            # smoke run
    .venv/bin/python bench/repo.py --profile insert   # cProfile of one fdbsync workload

The model has one index and SchemaMetadata; every operation is one transaction. The raw
sqlite3 side has a WITHOUT ROWID table with the same index, a counters row updated in each
insert's transaction (SchemaMetadata's equivalent) and the same PRAGMAs (WAL,
synchronous=FULL); it returns rows where fdbsync returns validated models. Every workload runs
`--repeat` times, each in a fresh temporary directory, and reports the median. Baselines, as in
bench/engine.py: raw sqlite3 from one thread, and raw sqlite3 behind the event-loop-to-thread
hop (`run_in_executor`, a pool of connections), at 1 and 32 tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sqlite3
import statistics
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from measure import Fn, Op, hop, run_tasks, run_threaded, table
from pydantic import Field

from fdbsync.data import Index, Model, Repo, SchemaMetadata, new_id
from fdbsync.engine import create_engine

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")
TEAMS = tuple(f"team-{n}" for n in range(10))
LIMIT = 10
TASKS = 32
THREADS = 8  # the hop's pool, as many as the engine's read threads
COUNTS = {"insert": 5000, "get": 20_000, "all_by": 5000}
PRELOAD = 10_000
RAW = "raw sqlite3, 1 thread"


def how(side: str, tasks: int) -> str:
    return f"{side}, {tasks} task{'' if tasks == 1 else 's'}"


HOWS = (RAW, *(how(side, n) for side in ("raw + hop", "fdbsync") for n in (1, TASKS)))


class Person(Model, source="people", indexes=[Index("team"), SchemaMetadata()]):
    id: str = Field(default_factory=new_id)
    name: str
    email: str
    team: str


def fields(i: int) -> dict[str, str]:
    return {"name": f"Person {i}", "email": f"person{i}@example.com", "team": TEAMS[i % 10]}


# -- raw sqlite3 --------------------------------------------------------------------------
class Raw:
    """The baseline: the same work with plain sqlite3 calls, returning rows, not models."""

    SCHEMA = (
        # WITHOUT ROWID: rows kept in id order, and the team index ends with the id, as
        # fdbsync's records and index entries are, so all_by needs no sort.
        "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, email TEXT, team TEXT) WITHOUT ROWID",
        "CREATE INDEX people_team ON people (team)",
        "CREATE TABLE meta (inserts INT, deletes INT, collection INT, updates INT, changes INT)",
        "INSERT INTO meta VALUES (0, 0, 0, 0, 0)",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections: list[sqlite3.Connection] = []
        self.writer = self.connect()
        for statement in self.SCHEMA:
            self.writer.execute(statement)
        self.write_lock = threading.Lock()
        self.local = threading.local()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        self.connections.append(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.connect()
        return conn

    def insert(self, i: int) -> None:
        row = (new_id(), *fields(i).values())
        with self.write_lock:
            self.writer.execute("BEGIN IMMEDIATE")
            self.writer.execute("INSERT INTO people VALUES (?, ?, ?, ?)", row)
            self.writer.execute(
                "UPDATE meta SET inserts = inserts + 1, collection = collection + 1, "
                "changes = changes + 1"
            )
            self.writer.execute("COMMIT")

    def get(self, id: str) -> tuple[str, ...] | None:
        row: tuple[str, ...] | None
        row = self.reader().execute("SELECT * FROM people WHERE id = ?", (id,)).fetchone()
        return row

    def all_by(self, team: str) -> list[tuple[str, ...]]:
        return (
            self.reader()
            .execute("SELECT * FROM people WHERE team = ? ORDER BY id LIMIT ?", (team, LIMIT))
            .fetchall()
        )

    def preload(self, people: list[Person]) -> None:
        self.writer.execute("BEGIN")
        self.writer.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?)",
            ((p.id, p.name, p.email, p.team) for p in people),
        )
        self.writer.execute(
            "UPDATE meta SET inserts = ?, collection = ?, changes = ?", [len(people)] * 3
        )
        self.writer.execute("COMMIT")

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def raw_fns(raw: Raw, ids: list[str]) -> dict[str, Fn]:
    return {
        "insert": raw.insert,
        "get": lambda i: raw.get(ids[i % len(ids)]),
        "all_by": lambda i: raw.all_by(TEAMS[i % 10]),
    }


# -- fdbsync ------------------------------------------------------------------------------
async def open_repo(repo: Repo, people: list[Person]) -> None:
    """Build the index (once, on the empty model), then preload in batches of 500."""
    await repo.build_indexes(Person)
    for start in range(0, len(people), 500):
        await repo.insert_all(people[start : start + 500])


def fdbsync_ops(repo: Repo, ids: list[str]) -> dict[str, Op]:
    async def insert(i: int) -> None:
        await repo.insert(Person(**fields(i)))

    async def get(i: int) -> None:
        await repo.get(Person, ids[i % len(ids)])

    async def all_by(i: int) -> None:
        await repo.all_by(Person, {"team": TEAMS[i % 10]}, limit=LIMIT)

    return {"insert": insert, "get": get, "all_by": all_by}


async def check(repo: Repo, raw: Raw, ids: list[str]) -> None:
    """Both sides hold the preloaded records and answer the same queries alike."""
    found = await repo.get(Person, ids[0])
    assert found is not None and raw.get(ids[0]) == (found.id, found.name, found.email, found.team)
    page = await repo.all_by(Person, {"team": TEAMS[3]}, limit=LIMIT)
    assert [p.id for p in page] == [row[0] for row in raw.all_by(TEAMS[3])]
    assert len(page) == LIMIT


async def one_run(
    workdir: Path, counts: dict[str, int], preload: int
) -> dict[tuple[str, str], float]:
    """Every workload, every way, once, on fresh databases in `workdir`."""
    people = [Person(**fields(i)) for i in range(preload)]
    ids = [p.id for p in people]
    raw = Raw(workdir / "raw.db")
    raw.preload(people)
    fns = raw_fns(raw, ids)
    result: dict[tuple[str, str], float] = {}
    with ThreadPoolExecutor(THREADS) as executor:
        async with create_engine(f"sqlite:///{workdir / 'fdbsync.db'}") as engine:
            repo = Repo(engine)
            await open_repo(repo, people)
            await check(repo, raw, ids)
            ops = fdbsync_ops(repo, ids)
            for name, count in counts.items():
                result[name, RAW] = run_threaded(fns[name], count)
                for tasks in (1, TASKS):
                    hopped = hop(executor, fns[name])
                    result[name, how("raw + hop", tasks)] = await run_tasks(hopped, count, tasks)
                    result[name, how("fdbsync", tasks)] = await run_tasks(ops[name], count, tasks)
    raw.close()
    return result


async def throughput(counts: dict[str, int], preload: int, repeat: int) -> list[list[str]]:
    runs: list[dict[tuple[str, str], float]] = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fdbsync-bench-repo-") as tmp:
            runs.append(await one_run(Path(tmp), counts, preload))
    rows: list[list[str]] = []
    for name in counts:
        median = {way: statistics.median(run[name, way] for run in runs) for way in HOWS}
        for way in HOWS:
            ratio = f"{median[way] / median[RAW]:.2f}"
            hopped = median[way.replace("fdbsync", "raw + hop")]
            vs_hop = "-" if way == RAW else f"{median[way] / hopped:.2f}"
            rows.append([name, way, f"{median[way]:,.0f}", ratio, vs_hop])
    return rows


async def profile(workload: str, count: int, preload: int) -> None:
    """Run one fdbsync workload at 32 tasks under cProfile (the event loop's thread only)."""
    with tempfile.TemporaryDirectory(prefix="fdbsync-bench-repo-") as tmp:
        people = [Person(**fields(i)) for i in range(preload)]
        async with create_engine(f"sqlite:///{Path(tmp) / 'fdbsync.db'}") as engine:
            repo = Repo(engine)
            await open_repo(repo, people)
            op = fdbsync_ops(repo, [p.id for p in people])[workload]
            profiler = cProfile.Profile()
            profiler.enable()
            rate = await run_tasks(op, count, TASKS)
            profiler.disable()
    print(f"{workload}, fdbsync, {TASKS} tasks: {rate:,.0f} ops/s under cProfile\n")
    for order in ("cumulative", "tottime"):
        print(f"-- top 25 by {order} --")
        pstats.Stats(profiler).strip_dirs().sort_stats(order).print_stats(25)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", choices=COUNTS, metavar="WORKLOAD", help=", ".join(COUNTS))
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0
    counts = {name: max(TASKS, int(n * scale)) for name, n in COUNTS.items()}
    preload = int(PRELOAD * scale)
    if args.profile:
        await profile(args.profile, counts[args.profile], preload)
        return
    repeat = 1 if args.quick else args.repeat
    rows = await throughput(counts, preload, repeat)
    print(f"Operations per second (median of {repeat}); ratio vs raw sqlite3 from 1 thread,")
    print("vs hop: vs raw + hop at the same number of tasks\n")
    print(table(["workload", "how", "ops/s", "ratio", "vs hop"], rows))
    print(f"\nWhere the time goes: bench/repo.py --profile {'|'.join(COUNTS)}")


if __name__ == "__main__":
    asyncio.run(main())
