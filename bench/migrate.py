"""Index build benchmark: fdbsync's online build against raw sqlite3's CREATE INDEX.

    .venv/bin/python bench/migrate.py           # 100,000 records, 3 repeats
    .venv/bin/python bench/migrate.py --quick   # 5,000 records, 1 repeat

Both sides hold the same records (id, name, email, team; 20 teams) at the same PRAGMAs (WAL,
synchronous=FULL). fdbsync stores them with a model that declares no index, then builds
`Index("team")` with `Repo.build_indexes` (online: batches of 1,000 keys, a cursor and a claim
per batch); raw sqlite3 runs `CREATE INDEX` on a WITHOUT ROWID table. Records per second of the
build alone, median of `--repeat` runs, each in a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import Field

from fdbsync import Index, Model, Repo, create_engine, new_id

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")
TEAMS = 20
LOAD_BATCH = 1000


class Plain(Model, source="people"):
    id: str = Field(default_factory=new_id)
    name: str
    email: str
    team: str


class Indexed(Model, source="people", indexes=[Index("team")]):
    id: str = Field(default_factory=new_id)
    name: str
    email: str
    team: str


def row(i: int) -> tuple[str, str, str, str]:
    return (f"id{i:08}", f"name {i}", f"user{i}@example.com", f"team{i % TEAMS}")


async def fdbsync_build(folder: Path, count: int) -> float:
    async with create_engine(f"sqlite:///{folder / 'fdbsync.db'}") as engine:
        loader = Repo(engine, models=[Plain])
        for start in range(0, count, LOAD_BATCH):
            batch = [row(i) for i in range(start, min(start + LOAD_BATCH, count))]
            await loader.insert_all([Plain(id=i, name=n, email=e, team=t) for i, n, e, t in batch])
        builder = Repo(engine, models=[Indexed])
        began = time.perf_counter()
        assert await builder.build_indexes(Indexed, batch_size=1000) == ["team"]
        took = time.perf_counter() - began
        found = await builder.all_by(Indexed, {"team": "team0"})
        assert len(found) == len(range(0, count, TEAMS))
        return count / took


def raw_build(folder: Path, count: int) -> float:
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    conn.execute(
        "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, email TEXT, team TEXT) WITHOUT ROWID"
    )
    for start in range(0, count, LOAD_BATCH):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?)",
            [row(i) for i in range(start, min(start + LOAD_BATCH, count))],
        )
        conn.execute("COMMIT")
    began = time.perf_counter()
    conn.execute("CREATE INDEX people_team ON people (team)")
    took = time.perf_counter() - began
    conn.close()
    return count / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 records, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--records", type=int, default=100_000)
    options = parser.parse_args()
    count = 5_000 if options.quick else options.records
    repeat = 1 if options.quick else options.repeat
    ours, raw = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as folder:
            raw.append(raw_build(Path(folder), count))
            ours.append(asyncio.run(fdbsync_build(Path(folder), count)))
    raw_rate, our_rate = statistics.median(raw), statistics.median(ours)
    print(f"Index build over {count:,} records (median of {repeat}); ratio vs raw sqlite3\n")
    print("| build | records/s | ratio |")
    print("|---|---|---|")
    print(f"| raw sqlite3 CREATE INDEX | {raw_rate:,.0f} | 1.00 |")
    print(
        f"| fdbsync build_indexes (online, 1,000-key batches) | {our_rate:,.0f} | "
        f"{our_rate / raw_rate:.3f} |"
    )


if __name__ == "__main__":
    main()
