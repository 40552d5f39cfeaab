"""Online index builds: batches with a stored cursor, one claimed builder at a time, takeover
of a dead builder's claim, resumption after SIGKILL, split records, redefinition, progress.

The multi-process tests run tests/data/_build_worker.py children on the test's sqlite file;
every wait on a child has a timeout, and every child is killed and reaped when its test ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fdbsync.data import Between, Gte, Index, IndexNotReadyError, Model, Repo
from fdbsync.engine import Engine, Transaction, pack, unpack

from ._build_worker import SOURCE, Ranked, RankedV0, rank_of

T = TypeVar("T")

WORKER = Path(__file__).with_name("_build_worker.py")
#: Seconds to wait for a child's line or exit (healthy ones take a fraction of that).
CHILD_TIMEOUT = 30.0
#: The index state key of Ranked's index, and its entries' prefix (single-tenant repo).
STATE_KEY = pack(("", "s", "index", SOURCE, "rank"))
ENTRIES = pack(("", "i", SOURCE, "rank"))
RECORDS = pack(("", "r", SOURCE))
KB = 1000


# -- helpers ---------------------------------------------------------------------------------


def ranked(primary_key: int, model: type[Model] = Ranked) -> Any:
    """Record `primary_key` as `model` (Ranked, or another model of its source)."""
    return model(id=primary_key, rank=rank_of(primary_key), tag=f"t{primary_key % 3}")


async def write_unindexed(engine: Engine, primary_keys: list[int]) -> None:
    """Store Ranked records through a model that lacks the index: no entries are written."""
    before = Repo(engine, models=[RankedV0])
    for start in range(0, len(primary_keys), 500):
        chunk = primary_keys[start : start + 500]
        await before.insert_all([ranked(pk, RankedV0) for pk in chunk])
    assert await raw_rows(engine, ENTRIES) == []


async def raw_rows(engine: Engine, prefix: bytes) -> list[tuple[Any, ...]]:
    """The keys under `prefix`, unpacked after it."""

    async def read(tr: Transaction) -> list[tuple[Any, ...]]:
        rows = await tr.get_range(prefix, prefix + b"\xff").to_list()
        return [unpack(kv.key, len(prefix)) for kv in rows]

    return await engine.transact(read)


async def raw_state(engine: Engine, key: bytes = STATE_KEY) -> dict[str, Any] | None:
    async def read(tr: Transaction) -> bytes | None:
        return await tr.get(key)

    stored = await engine.transact(read)
    return None if stored is None else json.loads(stored)


async def set_state(engine: Engine, value: dict[str, Any], key: bytes = STATE_KEY) -> None:
    async def write(tr: Transaction) -> None:
        tr.set(key, json.dumps(value).encode())

    await engine.transact(write)


async def assert_exact(engine: Engine, repo: Repo, primary_keys: list[int]) -> None:
    """Ranked's index is ready and holds exactly one entry per record, and answers queries."""
    expected = sorted((rank_of(pk), pk) for pk in primary_keys)
    assert await repo.index_states(Ranked) == {"rank": "ready"}
    state = await raw_state(engine)
    assert state is not None
    assert state["state"] == "ready"
    assert {k: state[k] for k in ("kind", "fields")} == {"kind": "index", "fields": ["rank"]}
    entries = await raw_rows(engine, ENTRIES)
    assert len(entries) == len(primary_keys)
    assert entries == expected  # sorted, so also no duplicates and nothing else
    assert [r.id for r in await repo.all(Ranked)] == sorted(primary_keys)
    found = await repo.all_by(Ranked, {"rank": Gte(0)})
    assert [(r.rank, r.id) for r in found] == expected
    assert all(r == ranked(r.id) for r in found)
    low, high = expected[0][0], expected[-1][0]
    between = await repo.all_by(Ranked, {"rank": Between(low, high)})
    assert [(r.rank, r.id) for r in between] == expected


def needs_sqlite(engine_url: str) -> None:
    if not engine_url.startswith("sqlite:"):
        pytest.skip("the build workers share the test's sqlite file")


# -- child processes ---------------------------------------------------------------------------

Event = tuple["Child", list[str] | None]  # a child and one line's words (None: end of output)


class Child:
    """One build worker, its stdout lines (pumped into a shared queue) and its stderr file."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        name: str,
        stderr: Path,
        events: asyncio.Queue[Event],
    ) -> None:
        self.proc, self.name, self.stderr = proc, name, stderr
        self.lines: list[list[str]] = []
        self.pump = asyncio.ensure_future(self._pump(events))

    async def _pump(self, events: asyncio.Queue[Event]) -> None:
        assert self.proc.stdout is not None
        while (raw := await self.proc.stdout.readline()).endswith(b"\n"):
            words = raw.decode().split()
            self.lines.append(words)
            events.put_nowait((self, words))
        events.put_nowait((self, None))

    def said(self, word: str) -> list[list[str]]:
        return [line[1:] for line in self.lines if line[0] == word]

    def progress(self) -> list[int]:
        return [int(words[2]) for words in self.said("progress")]

    async def exit_code(self) -> int:
        """Wait for the child to exit and for its output to be read."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), CHILD_TIMEOUT)
            await asyncio.wait_for(self.pump, CHILD_TIMEOUT)
        except TimeoutError:
            self.fail(f"did not exit within {CHILD_TIMEOUT} s")
        return code

    def fail(self, message: str) -> Any:
        try:
            errors = self.stderr.read_text()[-3000:]
        except OSError:
            errors = ""
        pytest.fail(f"child {self.name}: {message}\nlines: {self.lines[-20:]}\nstderr:\n{errors}")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self.pump.cancel()
        with suppress(asyncio.CancelledError):
            await self.pump


@asynccontextmanager
async def workers(
    count: int,
    tmp_path: Path,
    url: str,
    *,
    openings: int,
    batch_size: int,
    claim_timeout: float,
    wait: float,
) -> AsyncIterator[tuple[list[Child], asyncio.Queue[Event]]]:
    """Start `count` build workers; always kill and reap them."""
    events: asyncio.Queue[Event] = asyncio.Queue()
    started: list[Child] = []
    args = [str(a) for a in (url, openings, batch_size, claim_timeout, wait)]
    try:
        for number in range(count):
            name = f"w{number}"
            stderr = tmp_path / f"{name}.stderr"
            with stderr.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-u",
                    str(WORKER),
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            started.append(Child(proc, name, stderr, events))
        yield started, events
    finally:
        for child in started:
            await child.kill()


async def first_progress(events: asyncio.Queue[Event], count: int = 1) -> Child:
    """The first child to report its `count`th batch."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while True:
        try:
            child, words = await asyncio.wait_for(events.get(), deadline - time.monotonic())
        except TimeoutError:
            pytest.fail(f"no child reported {count} batches within {CHILD_TIMEOUT} s")
        if words is None:
            if child.proc.returncode not in (None, 0):
                child.fail(f"exited with {child.proc.returncode} before building")
            continue
        if words[0] == "failed":
            child.fail("an opening failed")
        if words[0] == "progress" and len(child.progress()) >= count:
            return child


# -- 1. many openings in several processes, a SIGKILLed holder, writes during the build ------


@pytest.mark.timeout(60)
async def test_twenty_openings_in_five_processes_build_once_despite_a_sigkill_and_writers(
    engine_url: str, engine: Engine, tmp_path: Path
) -> None:
    needs_sqlite(engine_url)
    old = list(range(0, 4000, 2))  # 2,000 records stored before the index was declared
    new = list(range(1, 4000, 40))  # 100 inserted during the build, spread over the range
    await write_unindexed(engine, old)
    repo = Repo(engine, models=[Ranked])
    assert await repo.index_states(Ranked) == {"rank": None}

    async def insert_in_reverse() -> None:
        for pk in reversed(new):
            await repo.insert(ranked(pk))

    async with workers(
        5, tmp_path, engine_url, openings=4, batch_size=7, claim_timeout=0.5, wait=40.0
    ) as (kids, events):
        holder = await first_progress(events)
        inserts = asyncio.ensure_future(insert_in_reverse())
        # Only the claim's holder commits batches, and it renews the claim with each one.
        holder.proc.send_signal(signal.SIGKILL)
        assert await holder.exit_code() == -signal.SIGKILL
        killed_done = max(holder.progress())
        assert killed_done > 0
        state = await raw_state(engine)
        assert state is not None and state["state"] == "building"
        assert state["done"] >= killed_done and state["cursor"]

        await asyncio.wait_for(inserts, CHILD_TIMEOUT)
        # The inserts all landed while the build was still running.
        assert await repo.index_states(Ranked) == {"rank": "building"}

        survivors = [kid for kid in kids if kid is not holder]
        for kid in survivors:
            if await kid.exit_code() != 0:
                kid.fail(f"exited with {kid.proc.returncode}")

    # Each surviving opening returned: exactly one of them finished the build.
    results = [words for kid in survivors for words in kid.said("built")]
    assert len(results) == 16
    assert sorted(names for _, names in results) == ["-"] * 15 + ["rank"]
    assert not any(kid.said("failed") for kid in survivors)
    # Someone took the dead holder's claim over and went on from its cursor, not from zero:
    # each committed batch reported a count of its own (only a last, empty batch repeats one).
    resumed = [done for kid in survivors for done in kid.progress() if done > killed_done]
    assert resumed, "no survivor committed a batch after the kill"
    assert min(resumed) <= state["done"] + 7
    counts = sorted(holder.progress() + [done for kid in survivors for done in kid.progress()])
    assert len(set(counts)) >= len(counts) - 1, "a batch was counted twice"
    # Every old record was visited once; an insert only if it landed ahead of the cursor.
    final = await raw_state(engine)
    assert final is not None
    assert max(resumed) == final["done"]
    assert len(old) <= final["done"] <= len(old) + len(new)
    await assert_exact(engine, repo, old + new)


# -- 2. a SIGKILLed build resumes from its cursor ----------------------------------------------


@pytest.mark.timeout(60)
async def test_a_build_killed_mid_way_resumes_from_its_stored_cursor(
    engine_url: str, engine: Engine, tmp_path: Path
) -> None:
    needs_sqlite(engine_url)
    primary_keys = list(range(1000))
    await write_unindexed(engine, primary_keys)
    batch = 5
    async with workers(
        1, tmp_path, engine_url, openings=1, batch_size=batch, claim_timeout=0.5, wait=10.0
    ) as ((child,), events):
        await first_progress(events, count=3)
        child.proc.send_signal(signal.SIGKILL)
        assert await child.exit_code() == -signal.SIGKILL
    printed = child.progress()
    assert len(printed) >= 3
    assert printed == sorted(printed) and printed[0] == batch
    assert not child.said("built"), "the build finished before it was killed"

    state = await raw_state(engine)
    assert state is not None
    assert state["state"] == "building"
    assert state["owner"]
    assert state["done"] >= printed[-1] > 0
    assert state["done"] < len(primary_keys)
    cursor = bytes.fromhex(state["cursor"])
    assert RECORDS < cursor < RECORDS + b"\xff"
    assert len(await raw_rows(engine, ENTRIES)) >= state["done"]  # its batches committed

    repo = Repo(engine, models=[Ranked])
    seen: list[int] = []
    # The dead worker's claim expires 0.5 s after its last batch; this build takes it over.
    built = await repo.build_indexes(
        Ranked, batch_size=batch, wait=10.0, progress=lambda name, done: seen.append(done)
    )
    assert built == ["rank"]
    assert seen, "the second build reported no batch"
    assert state["done"] < seen[0] <= state["done"] + batch  # went on from the cursor
    remaining = len(primary_keys) - state["done"]
    assert len(seen) <= remaining // batch + 1  # did not go over the first part again
    await assert_exact(engine, repo, primary_keys)


# -- 3. exactly one builder ----------------------------------------------------------------------


async def test_two_concurrent_builds_in_one_process_build_once(engine: Engine) -> None:
    primary_keys = list(range(300))
    await write_unindexed(engine, primary_keys)
    first, second = Repo(engine, models=[Ranked]), Repo(engine, models=[Ranked])
    reports: dict[int, list[int]] = {1: [], 2: []}
    results = await asyncio.gather(
        first.build_indexes(
            Ranked, batch_size=5, progress=lambda name, done: reports[1].append(done)
        ),
        second.build_indexes(
            Ranked, batch_size=5, progress=lambda name, done: reports[2].append(done)
        ),
    )
    assert sorted(results) == [[], ["rank"]]
    builder = 1 if results[0] == ["rank"] else 2
    waiter = 3 - builder
    assert reports[waiter] == [], "the waiting call committed batches"
    assert len(reports[builder]) >= 300 // 5
    await assert_exact(engine, first, primary_keys)


async def test_a_caller_that_will_not_wait_gets_index_not_ready(engine: Engine) -> None:
    primary_keys = list(range(300))
    await write_unindexed(engine, primary_keys)
    first, second = Repo(engine, models=[Ranked]), Repo(engine, models=[Ranked])
    started = asyncio.Event()

    def progress(name: str, done: int) -> None:
        started.set()

    building = asyncio.ensure_future(first.build_indexes(Ranked, batch_size=5, progress=progress))
    try:
        await asyncio.wait_for(started.wait(), CHILD_TIMEOUT)
        assert not building.done()
        with pytest.raises(IndexNotReadyError, match="Ranked index 'rank'") as raised:
            await second.build_indexes(Ranked, batch_size=5, wait=0.0)
        assert "another process" in str(raised.value)
        assert await asyncio.wait_for(building, CHILD_TIMEOUT) == ["rank"]
    finally:
        building.cancel()
    await assert_exact(engine, first, primary_keys)
    assert await second.build_indexes(Ranked, wait=0.0) == []  # ready: nothing to wait for


# -- 4. claims: an expired one is taken over, a live one is waited for -------------------------


async def test_an_expired_claim_is_taken_over(engine: Engine) -> None:
    primary_keys = list(range(50))
    await write_unindexed(engine, primary_keys)
    definition = Index("rank").describe()
    await set_state(
        engine,
        {
            **definition,
            "state": "building",
            "cursor": RECORDS.hex(),
            "owner": "someone-else",
            "expires": time.time() - 1,
            "done": 0,
        },
    )
    repo = Repo(engine, models=[Ranked])
    assert await repo.index_states(Ranked) == {"rank": "building"}
    seen: list[int] = []
    assert await repo.build_indexes(
        Ranked, batch_size=7, wait=0.0, progress=lambda n, d: seen.append(d)
    ) == ["rank"]
    assert seen[0] == 7  # it went on from the stored cursor
    await assert_exact(engine, repo, primary_keys)


async def test_a_live_claim_is_waited_for_then_given_up_on(engine: Engine) -> None:
    primary_keys = list(range(50))
    await write_unindexed(engine, primary_keys)
    held = {
        **Index("rank").describe(),
        "state": "building",
        "cursor": RECORDS.hex(),
        "owner": "someone-else",
        "expires": time.time() + 60,
        "done": 0,
    }
    await set_state(engine, held)
    repo = Repo(engine, models=[Ranked])
    began = time.monotonic()
    with pytest.raises(IndexNotReadyError, match="Ranked index 'rank'") as raised:
        await repo.build_indexes(Ranked, batch_size=7, wait=0.3)
    assert time.monotonic() - began >= 0.3  # it waited
    assert "0.3" in str(raised.value)
    assert await raw_state(engine) == held  # the claim was left alone
    assert await raw_rows(engine, ENTRIES) == []


# -- 5. split records are never cut by a batch -------------------------------------------------


class BlobV0(Model, source="test_builds_blobs"):
    id: int
    tag: str
    data: bytes = b""


class BlobV1(Model, source="test_builds_blobs", indexes=[Index("tag")]):
    id: int
    tag: str
    data: bytes = b""


BLOB_RECORDS = pack(("", "r", "test_builds_blobs"))
BLOB_ENTRIES = pack(("", "i", "test_builds_blobs", "tag"))


def parts_read(rows: list[tuple[tuple[Any, ...], bytes]], primary_key: int) -> list[int]:
    return [key[1] for key, _ in rows if key[0] == primary_key and len(key) == 2]


class _Rows:
    """A range read whose rows are recorded."""

    def __init__(self, rows: Any, seen: list[tuple[bytes, bytes]]) -> None:
        self.rows, self.seen = rows, seen

    async def to_list(self) -> list[Any]:
        found = await self.rows.to_list()
        self.seen.extend((kv.key, kv.value) for kv in found)
        return found

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for kv in self.rows:
            self.seen.append((kv.key, kv.value))
            yield kv


class _Spy:
    """A transaction that records the rows it read and the keys it set."""

    def __init__(self, tr: Transaction) -> None:
        self.tr = tr
        self.read: list[tuple[bytes, bytes]] = []
        self.written: list[tuple[bytes, bytes]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tr, name)

    def get_range(self, *args: Any, **kwargs: Any) -> _Rows:
        return _Rows(self.tr.get_range(*args, **kwargs), self.read)

    def set(self, key: bytes, value: bytes) -> None:
        self.written.append((key, value))
        self.tr.set(key, value)


class _Recording:
    """An engine whose committed transactions' reads and writes are kept."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.limits = engine.limits
        self.committed: list[_Spy] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    async def transact(self, fn: Callable[[Any], Awaitable[T]], **options: Any) -> T:
        last: list[_Spy] = []

        async def spied(tr: Transaction) -> T:
            spy = _Spy(tr)
            last[:] = [spy]
            return await fn(spy)

        result = await self.engine.transact(spied, **options)
        self.committed.extend(last)
        return result


async def test_split_records_are_never_cut_by_a_batch(engine: Engine) -> None:
    sizes = [0, 150 * KB, 0, 0, 1000 * KB, 0, 150 * KB, 1000 * KB, 150 * KB, 0, 0, 1000 * KB, 0]
    records = [BlobV1(id=n, tag=f"t{n % 4}", data=os.urandom(size)) for n, size in enumerate(sizes)]
    before = Repo(engine, models=[BlobV0])
    for record in records:
        await before.insert(BlobV0(**record.model_dump()))
    stored = await raw_rows(engine, BLOB_RECORDS)
    parts = {pk: sum(1 for key in stored if key[0] == pk and len(key) == 2) for pk in range(13)}
    assert all(parts[n] >= 2 for n, size in enumerate(sizes) if size)
    assert all(parts[n] == 0 for n, size in enumerate(sizes) if not size)

    recording = _Recording(engine)
    repo = Repo(recording, models=[BlobV1])  # type: ignore[arg-type]
    seen: list[int] = []
    batch_size = 3
    assert await repo.build_indexes(
        BlobV1, batch_size=batch_size, progress=lambda n, d: seen.append(d)
    ) == ["tag"]

    batches = [
        spy for spy in recording.committed if any(k.startswith(BLOB_RECORDS) for k, _ in spy.read)
    ]
    assert len(batches) == len(seen) >= 5
    indexed: list[int] = []
    for spy in batches:
        rows = [
            (unpack(k, len(BLOB_RECORDS)), v) for k, v in spy.read if k.startswith(BLOB_RECORDS)
        ]
        headers = [key[0] for key, _ in rows if len(key) == 1]
        entries = [
            unpack(k, len(BLOB_ENTRIES)) for k, _ in spy.written if k.startswith(BLOB_ENTRIES)
        ]
        done = [pk for _, pk in entries]
        assert done, "a batch that indexed nothing"
        # The batch indexed the records whose header it read, in key order...
        assert done == headers[: len(done)]
        for pk in done:
            # ...each split one with all its parts, read in this batch...
            assert parts_read(rows, pk) == list(range(parts[pk])), pk
        # ...except a split record the key budget cut, left whole to the next batch.
        assert len(headers) - len(done) <= 1
        if len(headers) > len(done):
            cut = headers[-1]
            assert len(done) >= 1 and len(parts_read(rows, cut)) < parts[cut]
        # Over the key budget only to finish a split record that came first, alone.
        if len(rows) > batch_size:
            assert len(done) == 1 and parts[done[0]] >= 2
        written = sum(len(k) + len(v) for k, v in spy.written)
        assert written < engine.limits.transaction_size // 100
        indexed += done
    assert sorted(indexed) == list(range(13))  # every record indexed once, by one batch

    entries = await raw_rows(engine, BLOB_ENTRIES)
    assert entries == sorted((r.tag, r.id) for r in records)
    assert await repo.index_states(BlobV1) == {"tag": "ready"}
    for tag in ("t0", "t1", "t2", "t3"):
        found = await repo.all_by(BlobV1, {"tag": tag})
        assert found == [r for r in records if r.tag == tag]


# -- 6. redefinition under an old name ---------------------------------------------------------


class RankedOld(Model, source=SOURCE, indexes=[Index("tag", name="rank")]):
    """An older "rank": on tag, not on rank."""

    id: int
    rank: int
    tag: str = ""


async def test_a_redefined_index_loses_its_old_entries_and_is_rebuilt(engine: Engine) -> None:
    old = Repo(engine, models=[RankedOld])
    assert await old.build_indexes(RankedOld) == ["rank"]
    await old.insert_all([ranked(pk, RankedOld) for pk in range(30)])
    assert sorted(await raw_rows(engine, ENTRIES)) == sorted((f"t{pk % 3}", pk) for pk in range(30))

    repo = Repo(engine, models=[Ranked])
    assert await repo.index_states(Ranked) == {"rank": None}
    # Writers keep the declared definition's entries, next to the old ones, until the build.
    await repo.insert_all([ranked(pk) for pk in range(30, 40)])
    assert len(await raw_rows(engine, ENTRIES)) == 40

    assert await repo.build_indexes(Ranked, batch_size=4) == ["rank"]
    assert not any(isinstance(entry[0], str) for entry in await raw_rows(engine, ENTRIES))
    await assert_exact(engine, repo, list(range(40)))
    assert await old.index_states(RankedOld) == {"rank": None}


async def test_a_state_stored_for_another_definition_is_rebuilt_from_scratch(
    engine: Engine,
) -> None:
    """Even a "ready" state under the name counts as not built when its definition differs,
    and an entry it left is dropped."""
    primary_keys = list(range(20))
    await write_unindexed(engine, primary_keys)
    await set_state(engine, {"kind": "index", "fields": ["tag"], "state": "ready"})

    async def junk(tr: Transaction) -> None:
        tr.set(pack(("t0", 999), ENTRIES), b"")

    await engine.transact(junk)
    repo = Repo(engine, models=[Ranked])
    assert await repo.index_states(Ranked) == {"rank": None}
    assert await repo.build_indexes(Ranked, batch_size=6) == ["rank"]
    await assert_exact(engine, repo, primary_keys)


# -- 7. progress -------------------------------------------------------------------------------


async def test_progress_counts_increase_to_the_record_count(engine: Engine) -> None:
    primary_keys = list(range(50))
    await write_unindexed(engine, primary_keys)
    repo = Repo(engine, models=[Ranked])
    calls: list[tuple[str, int]] = []
    assert await repo.build_indexes(
        Ranked, batch_size=7, progress=lambda name, done: calls.append((name, done))
    ) == ["rank"]
    assert {name for name, _ in calls} == {"rank"}
    counts = [done for _, done in calls]
    assert all(a < b for a, b in pairwise(counts)), counts
    assert counts == [7, 14, 21, 28, 35, 42, 49, 50]
    assert counts[-1] == len(primary_keys)
    state = await raw_state(engine)
    assert state is not None and state["done"] == len(primary_keys)
    await assert_exact(engine, repo, primary_keys)


async def test_an_index_dropped_under_its_build_is_not_brought_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A downgrade that drops the index (its state) between two batches of a build: the
    build stops instead of claiming the index afresh and rebuilding it."""
    primary_keys = list(range(40))
    await write_unindexed(engine, primary_keys)
    repo = Repo(engine, models=[Ranked])
    transactions = 0
    run = repo._run

    async def clear(tr: Transaction) -> None:
        tr.clear(STATE_KEY)

    async def dropping_before_the_second_batch(op: Any, **options: Any) -> Any:
        nonlocal transactions
        transactions += 1  # 1: the claim, 2: the first batch, 3: the second
        if transactions == 3:
            await engine.transact(clear)
        return await run(op, **options)

    monkeypatch.setattr(repo, "_run", dropping_before_the_second_batch)
    assert await repo.build_indexes(Ranked, ["rank"], batch_size=5) == []
    assert transactions == 3  # it stopped at the second batch
    assert await raw_state(engine) is None
