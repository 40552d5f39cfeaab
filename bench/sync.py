"""Sync benchmark: many live sessions on one collection and on distinct records, after one write.

    .venv/bin/python bench/sync.py            # full run, 3 repeats (about 8 minutes: the naive
                                              # side takes about 2.5 of them per repeat)
    .venv/bin/python bench/sync.py --quick    # smoke run: 500 + 50 sessions, 1 repeat
    .venv/bin/python bench/sync.py --profile  # cProfile of the fdbsync side's collection write
    .venv/bin/python bench/sync.py --naive-sessions 2000,1000   # cap the naive side

Sessions: 10,000 sync the same collection (`sync_all` of the first 20 records of a model with
SchemaMetadata, watched at its `changes` counter) and 1,000 sync one record each (`sync_one`,
1,000 distinct ids; the first of them is also in the collection). Each session is driven by its
own consumer task, `async for changed in session.updates()`, which stamps `time.perf_counter()`
when its assigns show the write.

Scenarios, one write each (`await repo.update(record, {"n": ...})`):

- collection write: a record in the collection, also followed by one `sync_one` session, so
  10,001 sessions must show it;
- record write: a record outside the collection, followed by one `sync_one` session; the
  collection's counter moves too, so its query is read again, but its result is unchanged.

Latency runs from `time.perf_counter()` just before the write call (and, separately, from the
call's return) to each affected session's stamp: p50, p99 and max over sessions, then the median
of each over `--repeat` runs, every run in a fresh temporary directory.

The naive baseline, in this file, on the same engine and repo: each session reads in its own
transaction that also arms its own storage watch on the key it depends on
(`tx.transaction_handle.watch(repo.counter_key(...))` or `repo.record_key(...)`), awaits the
watch in its own task, reads again in its own transaction (re-arming the watch) and stamps
the time when the result differs. So: one storage watch and one re-read per session.

Both sides open the engine with `?max_watches=20000`: the naive design needs one watch per
session, more than the default limit of 10,000. Memory per idle session is measured in a
fresh subprocess per design: RSS growth while the sessions are made, then, after closing them,
`tracemalloc` growth while they are made again, divided by the number of sessions (live
sessions with their consumer tasks, after `gc.collect()`); the naive side there on at most 2,000
+ 1,000 sessions, since each of its sessions holds its own copy of what it shows. After the
sessions are opened the benchmark collects garbage once, so that the setup's garbage is not
collected during the first write; the collector's pauses during each write are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from measure import table

from fdbsync.data import Model, Query, Repo, SchemaMetadata
from fdbsync.engine import Watch, create_engine
from fdbsync.sync import LiveSession, hub_for

COLLECTION = 20  # records in the synced collection
FULL = (10_000, 1_000)  # collection sessions, record sessions
QUICK = (500, 50)
NAIVE_MEMORY = (2_000, 1_000)  # at most this many naive sessions in the memory subprocess
MAX_WATCHES = 20_000
OPENERS = 64  # sessions opened concurrently while setting up
TIMEOUT = 300.0  # seconds a write may take to reach every session
GOAL_P99_MS = 250.0
GOAL_KB = 20.0
DESIGNS = ("fdbsync", "naive")
SCENARIOS = ("collection write", "record write")


class Item(Model, source="items", indexes=[SchemaMetadata()]):
    id: str
    name: str
    n: int


def item_id(i: int) -> str:
    return f"item-{i:05d}"


#: The collection the collection sessions sync: the model's first records in key order.
COLLECTION_QUERY: Query[Item] = Query(Item, limit=COLLECTION)


def url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'sync.db'}?max_watches={MAX_WATCHES}"


async def prepare(repo: Repo, records: int) -> None:
    for start in range(0, records, 500):
        batch = range(start, min(records, start + 500))
        await repo.insert_all([Item(id=item_id(i), name=f"Item {i}", n=0) for i in batch])


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


# -- who must see a write -----------------------------------------------------------------
class Tracker:
    """Sessions report every change of their assigns here; a write waits until each affected
    session shows it."""

    def __init__(self) -> None:
        self.waiting: set[int] = set()
        self.times: dict[int, float] = {}
        self.done = asyncio.Event()
        self.record_id = ""
        self.n = -1

    def expect(self, sessions: Iterable[int], record_id: str, n: int) -> None:
        self.waiting, self.times = set(sessions), {}
        self.record_id, self.n = record_id, n
        self.done.clear()

    def shows(self, value: Any) -> bool:
        records = value if isinstance(value, list) else [value]
        return any(r is not None and r.id == self.record_id and r.n == self.n for r in records)

    def seen(self, session: int, value: Any) -> None:
        now = time.perf_counter()
        if session in self.waiting and self.shows(value):
            self.times[session] = now
            self.waiting.discard(session)
            if not self.waiting:
                self.done.set()


@dataclass(frozen=True)
class Target:
    """What session number `index` syncs: the collection, or one record."""

    index: int
    record: int | None  # None: the collection

    @property
    def label(self) -> str:
        return "items" if self.record is None else "item"


def targets(n_all: int, n_one: int) -> list[Target]:
    return [Target(i, None) for i in range(n_all)] + [Target(n_all + i, i) for i in range(n_one)]


async def in_pool(fn: Callable[[Target], Awaitable[None]], items: list[Target]) -> None:
    work = iter(items)

    async def worker() -> None:
        for item in work:
            await fn(item)

    await asyncio.gather(*(worker() for _ in range(OPENERS)))


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + TIMEOUT
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"still waiting for {what} after {TIMEOUT:.0f} s")
        await asyncio.sleep(0.01)


# -- the two designs ----------------------------------------------------------------------
class Side(Protocol):
    name: str

    async def open(self, items: list[Target]) -> None: ...
    def storage_watches(self) -> int: ...
    def rereads(self) -> int: ...
    def retries(self) -> int | None: ...
    async def settle(self) -> None: ...
    async def close(self) -> None: ...


class FdbsyncSide:
    """LiveSessions over the watch hub."""

    name = "fdbsync"

    def __init__(self, repo: Repo, tracker: Tracker) -> None:
        self.repo = repo
        self.tracker = tracker
        self.tasks: list[asyncio.Task[None]] = []
        self.keys = 0

    async def open(self, items: list[Target]) -> None:
        await in_pool(self._open, items)
        await asyncio.sleep(0)  # every consumer task waits in updates()
        self.keys = hub_for(self.repo.engine).stats().keys

    async def _open(self, target: Target) -> None:
        session = LiveSession(self.repo)
        if target.record is None:
            await session.sync_all(target.label, COLLECTION_QUERY)
        else:
            await session.sync_one(target.label, Item, item_id(target.record))
        self.tasks.append(asyncio.create_task(self._follow(session, target)))

    async def _follow(self, session: LiveSession, target: Target) -> None:
        async for _ in session.updates():
            self.tracker.seen(target.index, session.assigns[target.label])

    def storage_watches(self) -> int:
        return hub_for(self.repo.engine).stats().storage_watches

    def rereads(self) -> int:
        return hub_for(self.repo.engine).stats().rereads

    def retries(self) -> int | None:
        return None  # the hub's transactions retry inside the library, unseen here

    async def settle(self) -> None:
        await wait_until(lambda: self.storage_watches() == self.keys, "the hub to re-arm")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()  # leaving updates() closes the session
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []


class NaiveSession:
    """One storage watch and one re-read per session, each in its own transaction."""

    __slots__ = ("assigns", "key", "label", "side", "target", "value", "watch")

    def __init__(self, side: NaiveSide, target: Target) -> None:
        self.side = side
        self.target = target
        self.label = target.label
        repo = side.repo
        if target.record is None:
            self.key = repo.counter_key(Item, "changes")
        else:
            self.key = repo.record_key(Item, item_id(target.record))
        self.assigns: dict[str, Any] = {}
        self.value: Any = None
        self.watch: Watch | None = None

    async def _read(self, tx: Repo) -> tuple[Any, Watch]:
        self.side.attempts += 1  # more than once when the transaction is retried
        if self.target.record is None:
            value: Any = await tx.all(COLLECTION_QUERY)
        else:
            value = await tx.get(Item, item_id(self.target.record))
        return value, tx.transaction_handle.watch(self.key)

    async def start(self) -> None:
        self.value, self.watch = await self.side.repo.transaction(self._read)
        self.assigns[self.label] = self.value
        self.side.armed += 1
        self.side.transactions += 1

    async def run(self) -> None:
        try:
            while True:
                assert self.watch is not None
                await self.watch
                self.side.armed -= 1
                value, self.watch = await self.side.repo.transaction(self._read)
                self.side.armed += 1
                self.side.reread_count += 1
                self.side.transactions += 1
                if value != self.value:
                    self.value = self.assigns[self.label] = value
                    self.side.tracker.seen(self.target.index, value)
        finally:
            if self.watch is not None:
                self.watch.cancel()


class NaiveSide:
    name = "naive"

    def __init__(self, repo: Repo, tracker: Tracker) -> None:
        self.repo = repo
        self.tracker = tracker
        self.tasks: list[asyncio.Task[None]] = []
        self.armed = 0
        self.reread_count = 0
        self.sessions = 0
        self.attempts = 0  # transaction attempts, retried ones included
        self.transactions = 0

    async def open(self, items: list[Target]) -> None:
        await in_pool(self._open, items)
        self.sessions += len(items)
        await asyncio.sleep(0)

    async def _open(self, target: Target) -> None:
        session = NaiveSession(self, target)
        await session.start()
        self.tasks.append(asyncio.create_task(session.run()))

    def storage_watches(self) -> int:
        pending: int | None = getattr(self.repo.engine, "pending_watches", None)
        return self.armed if pending is None else pending

    def rereads(self) -> int:
        return self.reread_count

    def retries(self) -> int | None:
        return self.attempts - self.transactions

    async def settle(self) -> None:
        await wait_until(lambda: self.armed == self.sessions, "every naive session to re-arm")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []


def make_side(design: str, repo: Repo, tracker: Tracker) -> Side:
    return FdbsyncSide(repo, tracker) if design == "fdbsync" else NaiveSide(repo, tracker)


# -- measuring ----------------------------------------------------------------------------
@dataclass
class Measurement:
    live: int
    updated: int
    storage_watches: int
    rereads: int
    from_call: list[float]  # ms, one per affected session
    from_return: list[float]
    commit_ms: float
    retries: int | None  # transactions retried (naive side only)
    gc_ms: float  # the garbage collector's pauses between the write call and the last update
    gc_full: int  # of which full (generation 2) collections


class GcPauses:
    """The garbage collector's pauses while the block runs, through `gc.callbacks`."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.full = 0
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self._started) * 1000
            self.full += info["generation"] == 2


@dataclass
class Run:
    setup_s: dict[str, float] = field(default_factory=dict)
    results: dict[tuple[str, str], Measurement] = field(default_factory=dict)


def scenario_write(scenario: str, n_all: int, n_one: int) -> tuple[int, list[int]]:
    """The record a scenario writes, and the sessions that must show the write."""
    if scenario == "collection write":
        return 0, [*range(n_all), n_all]
    record = n_one - 1
    assert record >= COLLECTION, "the record write must be outside the collection"
    return record, [n_all + record]


async def measure_write(
    side: Side, repo: Repo, tracker: Tracker, record: int, affected: list[int], n: int, live: int
) -> Measurement:
    await side.settle()
    watches = side.storage_watches()
    rereads = side.rereads()
    retries = side.retries()
    stored = await repo.get(Item, item_id(record))
    assert stored is not None
    tracker.expect(affected, stored.id, n)
    with GcPauses() as pauses:
        called = time.perf_counter()
        await repo.update(stored, {"n": n})
        returned = time.perf_counter()
        try:
            await asyncio.wait_for(tracker.done.wait(), TIMEOUT)
        except TimeoutError:
            missing = len(tracker.waiting)
            raise TimeoutError(f"{side.name}: {missing} sessions never showed the write") from None
    await side.settle()
    times = list(tracker.times.values())
    return Measurement(
        live=live,
        updated=len(times),
        storage_watches=watches,
        rereads=side.rereads() - rereads,
        from_call=[(t - called) * 1000 for t in times],
        from_return=[(t - returned) * 1000 for t in times],
        commit_ms=(returned - called) * 1000,
        retries=None if retries is None else (side.retries() or 0) - retries,
        gc_ms=pauses.ms,
        gc_full=pauses.full,
    )


async def one_run(workdir: Path, sizes: dict[str, tuple[int, int]], marker: list[int]) -> Run:
    """Both designs, one after the other, on one fresh engine and repo."""
    run = Run()
    records = max(size[1] for size in sizes.values())
    async with create_engine(url(workdir)) as engine:
        repo = Repo(engine)
        await prepare(repo, records)
        for design in DESIGNS:
            n_all, n_one = sizes[design]
            tracker = Tracker()
            side = make_side(design, repo, tracker)
            started = time.perf_counter()
            await side.open(targets(n_all, n_one))
            run.setup_s[design] = time.perf_counter() - started
            gc.collect()  # the setup's garbage is not the first write's to collect
            try:
                for scenario in SCENARIOS:
                    record, affected = scenario_write(scenario, n_all, n_one)
                    marker[0] += 1
                    run.results[design, scenario] = await measure_write(
                        side, repo, tracker, record, affected, marker[0], n_all + n_one
                    )
            finally:
                await side.close()
            gc.collect()
    return run


# -- memory (in a fresh subprocess per design) ----------------------------------------------
async def memory_of(design: str, n_all: int, n_one: int) -> dict[str, Any]:
    """Bytes per idle session of each kind, as RSS growth, then (the sessions closed and made
    again) as tracemalloc growth; and tracemalloc's figure for all of them after a write to
    the collection reached every collection session."""
    with tempfile.TemporaryDirectory(prefix="fdbsync-bench-sync-") as tmp:
        async with create_engine(url(Path(tmp))) as engine:
            repo = Repo(engine)
            await prepare(repo, n_one)
            kinds = {"collection": targets(n_all, 0), "record": targets(n_all, n_one)[n_all:]}
            record, affected = scenario_write("collection write", n_all, n_one)
            result: dict[str, Any] = {}
            for n, method in enumerate(("rss", "tracemalloc"), 1):
                if method == "tracemalloc":
                    tracemalloc.start()
                tracker = Tracker()
                side = make_side(design, repo, tracker)

                def now(method: str = method) -> int:
                    gc.collect()
                    if method == "tracemalloc":
                        return tracemalloc.get_traced_memory()[0]
                    return rss_bytes() or 0

                start = now()
                for kind, items in kinds.items():
                    before = now()
                    await side.open(items)
                    await asyncio.sleep(0.1)  # consumer tasks started and waiting
                    result[f"{method} {kind}"] = (now() - before) / len(items)
                await measure_write(side, repo, tracker, record, affected, n, n_all + n_one)
                result[f"{method} after write"] = (now() - start) / (n_all + n_one)
                await side.close()
                if method == "tracemalloc":
                    tracemalloc.stop()
                gc.collect()
            result["rss available"] = rss_bytes() is not None
            result["sessions"] = [n_all, n_one]
            return result


def memory(design: str, n_all: int, n_one: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--memory-of", design, "--sizes", f"{n_all},{n_one}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory subprocess for {design} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- profile ------------------------------------------------------------------------------
async def profile(n_all: int, n_one: int) -> None:
    """The fdbsync side's collection write, under cProfile (the event loop's thread only)."""
    with tempfile.TemporaryDirectory(prefix="fdbsync-bench-sync-") as tmp:
        async with create_engine(url(Path(tmp))) as engine:
            repo = Repo(engine)
            await prepare(repo, n_one)
            tracker = Tracker()
            side = FdbsyncSide(repo, tracker)
            await side.open(targets(n_all, n_one))
            gc.collect()
            record, affected = scenario_write("collection write", n_all, n_one)
            await measure_write(side, repo, tracker, record, affected, 1, n_all + n_one)  # warm
            profiler = cProfile.Profile()
            profiler.enable()
            found = await measure_write(side, repo, tracker, record, affected, 2, n_all + n_one)
            profiler.disable()
            await side.close()
    p99 = quantile(found.from_call, 0.99)
    print(f"fdbsync, collection write, {found.updated:,} sessions: p99 {p99:.1f} ms under cProfile")
    print(f"garbage collector: {found.gc_ms:.0f} ms of pauses ({found.gc_full} full collections)")
    print("(the profile spans the write, the deliveries and the hub re-arming its watches)\n")
    for order in ("cumulative", "tottime"):
        print(f"-- top 25 by {order} --")
        pstats.Stats(profiler).strip_dirs().sort_stats(order).print_stats(25)


# -- reporting ----------------------------------------------------------------------------
def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile (p99 of 10,001 samples is the 9,901st smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def stats_of(values: list[float]) -> tuple[float, float, float]:
    return quantile(values, 0.5), quantile(values, 0.99), max(values)


def retried(found: list[Measurement]) -> str:
    counts = [m.retries for m in found]
    if any(count is None for count in counts):
        return "-"
    return f"{statistics.median(count or 0 for count in counts):,.0f}"


def kb(value: float) -> str:
    return f"{value / 1024:.1f}"


def report(
    runs: list[Run],
    sizes: dict[str, tuple[int, int]],
    memories: dict[str, dict[str, Any]],
    capped: bool,
) -> None:
    median = statistics.median
    per_session: dict[str, float] = {}
    for design in DESIGNS:
        n_all, n_one = sizes[design]
        mem = memories[design]
        per_session[design] = (
            mem["tracemalloc collection"] * n_all + mem["tracemalloc record"] * n_one
        ) / (n_all + n_one)
    figures: dict[tuple[str, str], dict[str, float]] = {}
    for scenario in SCENARIOS:
        rows, late = [], []
        for design in DESIGNS:
            found = [run.results[design, scenario] for run in runs]
            calls = [stats_of(m.from_call) for m in found]
            returns = [stats_of(m.from_return) for m in found]
            fig = {
                "updated": median(m.updated for m in found),
                "live": found[0].live,
                "watches": median(m.storage_watches for m in found),
                "rereads": median(m.rereads for m in found),
                "p50": median(c[0] for c in calls),
                "p99": median(c[1] for c in calls),
                "max": median(c[2] for c in calls),
            }
            figures[design, scenario] = fig
            rows.append(
                [
                    design,
                    f"{fig['updated']:,.0f} of {fig['live']:,}",
                    f"{fig['watches']:,.0f}",
                    f"{fig['rereads']:,.0f}",
                    f"{fig['p50']:.1f}",
                    f"{fig['p99']:.1f}",
                    f"{fig['max']:.1f}",
                    kb(per_session[design]),
                ]
            )
            late.append(
                [
                    design,
                    f"{median(m.commit_ms for m in found):.1f}",
                    *(f"{median(r[i] for r in returns):.1f}" for i in range(3)),
                    f"{median(m.gc_ms for m in found):.0f}",
                    f"{sum(m.gc_full for m in found)}",
                    retried(found),
                ]
            )
        print(f"### {scenario}\n")
        header = ["design", "sessions updated", "storage watches", "re-reads per write"]
        print(table([*header, "p50 ms", "p99 ms", "max ms", "KB per idle session"], rows))
        print("\nFrom the write call's return (the call itself took `commit ms`):\n")
        header = ["design", "commit ms", "p50 ms", "p99 ms", "max ms", "GC ms"]
        header += ["full GCs (all runs)", "transactions retried"]
        print(table(header, late))
        print()

    print("### Memory per idle session\n")
    rows = []
    for design in DESIGNS:
        mem = memories[design]
        n_all, n_one = mem["sessions"]
        for kind, count in (("collection", n_all), ("record", n_one)):
            rss = kb(mem[f"rss {kind}"]) if mem["rss available"] else "-"
            rows.append([design, kind, f"{count:,}", kb(mem[f"tracemalloc {kind}"]), rss])
        after = kb(mem["tracemalloc after write"])
        rss = kb(mem["rss after write"]) if mem["rss available"] else "-"
        rows.append([design, "all, after a collection write", f"{n_all + n_one:,}", after, rss])
    print(table(["design", "sessions", "count", "tracemalloc KB each", "RSS KB each"], rows))
    print()
    print("### Setup\n")
    rows = [
        [design, f"{sum(sizes[design]):,}", f"{median(run.setup_s[design] for run in runs):.1f}"]
        for design in DESIGNS
    ]
    print(table(["design", "sessions", "seconds to open them (64 at a time)"], rows))
    print()
    goals(figures, sizes, per_session)
    if capped:
        n_all, n_one = sizes["naive"]
        print(
            f"\nThe naive side ran {n_all:,} + {n_one:,} sessions (--naive-sessions), not "
            f"{sizes['fdbsync'][0]:,} + {sizes['fdbsync'][1]:,}: compare per-session figures, "
            "not totals."
        )


def goals(
    figures: dict[tuple[str, str], dict[str, float]],
    sizes: dict[str, tuple[int, int]],
    per_session: dict[str, float],
) -> None:
    n_all, n_one = sizes["fdbsync"]
    rows = []
    collection = figures["fdbsync", "collection write"]
    record = figures["fdbsync", "record write"]
    distinct_keys = n_one + 1
    watches = {collection["watches"], record["watches"]}
    rows.append(
        [
            "storage watches = distinct keys",
            f"{'/'.join(f'{w:,.0f}' for w in sorted(watches))} watches, {distinct_keys:,} keys",
            "met" if watches == {distinct_keys} else "missed",
        ]
    )
    # Each write moves two watched keys (its record, the collection's counter): two reads.
    rereads = (collection["rereads"], record["rereads"])
    rows.append(
        [
            "one re-read per distinct read per change",
            f"{rereads[0]:.0f} (collection write), {rereads[1]:.0f} (record write); 2 each due",
            "met" if rereads == (2, 2) else "missed",
        ]
    )
    p99 = collection["p99"]
    rows.append(
        [
            f"{n_all:,} collection sessions updated, p99 < {GOAL_P99_MS:.0f} ms",
            f"{p99:.1f} ms ({collection['updated']:,.0f} sessions)",
            "met" if p99 < GOAL_P99_MS else "missed",
        ]
    )
    per = per_session["fdbsync"] / 1024
    rows.append(
        [
            f"< {GOAL_KB:.0f} KB per idle session",
            f"{per:.1f} KB (tracemalloc, mean of {n_all + n_one:,})",
            "met" if per < GOAL_KB else "missed",
        ]
    )
    print("### Against the goals (fdbsync)\n")
    print(table(["goal", "figure", "status"], rows))


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500 + 50 sessions, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--naive-sessions",
        metavar="N_ALL,N_ONE",
        help="cap the naive side at N_ALL collection and N_ONE record sessions",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the fdbsync side")
    parser.add_argument("--memory-of", choices=DESIGNS, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        n_all, n_one = (int(n) for n in args.sizes.split(","))
        print(json.dumps(await memory_of(args.memory_of, n_all, n_one)))
        return
    full = QUICK if args.quick else FULL
    if args.profile:
        await profile(*full)
        return
    naive = full
    if args.naive_sessions:
        n_all, n_one = (int(n) for n in args.naive_sessions.split(","))
        naive = (min(n_all, full[0]), min(n_one, full[1]))
    sizes = {"fdbsync": full, "naive": naive}
    repeat = 1 if args.quick else args.repeat
    load = os.getloadavg()
    began = time.perf_counter()
    # The naive side's memory is measured on at most NAIVE_MEMORY[0] collection sessions: each
    # holds its own copy of everything, so the figure per session does not depend on how many
    # there are, and making 10,000 of them under tracemalloc takes minutes.
    memories = {
        "fdbsync": memory("fdbsync", *full),
        "naive": memory("naive", min(naive[0], NAIVE_MEMORY[0]), min(naive[1], NAIVE_MEMORY[1])),
    }
    runs = []
    marker = [0]
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fdbsync-bench-sync-") as tmp:
            runs.append(await one_run(Path(tmp), sizes, marker))
    print(
        f"Sessions: fdbsync {full[0]:,} on the collection + {full[1]:,} on distinct records; "
        f"naive {naive[0]:,} + {naive[1]:,}. Latency from the write call to each affected "
        f"session's assigns, median of {repeat} run(s); {time.perf_counter() - began:.0f} s; "
        f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after.\n"
    )
    report(runs, sizes, memories, capped=naive != full)


if __name__ == "__main__":
    asyncio.run(main())
