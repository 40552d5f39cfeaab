"""A transaction's lifecycle under races, and the engine's across close and reopen.

Regression tests for the embedded sqlite engine: reads still running on a worker thread when
their transaction commits, resets or is cancelled; transactions dropped without commit or
cancel; versionstamps of transactions that never commit; range reads answered by the
transaction's own clear; reset() and its options; closing and reopening the engine; version
numbers ahead of the wall clock. Last, a seeded model test of read-your-writes.

A race is made deterministic by holding one call of an engine function on its worker thread
(the real function, wrapped) until the test has done what must happen meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fdbsync.engine import (
    Engine,
    ErrorCode,
    FDBError,
    KeySelector,
    Limits,
    Transaction,
    create_engine,
)
from fdbsync.engine.atomic import AtomicOp, apply_atomic
from fdbsync.engine.sqlite import transaction as sqlite_transaction
from fdbsync.engine.sqlite import watches as sqlite_watches
from fdbsync.engine.sqlite.engine import SqliteEngine
from fdbsync.testing import eventually

from .committed import expect_error, read, read_range, store

#: How long something that must happen may take (generous: it normally takes milliseconds).
STEP_S = 5.0
#: How long a held worker waits to be released before giving up (only when a test fails).
HOLD_LIMIT_S = 15.0
#: How long to watch for something that must NOT happen.
SHORT_S = 0.2
WATCHER_THREAD = "fdbsync-sqlite-watcher"

# -- helpers -----------------------------------------------------------------------------------


def watcher_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == WATCHER_THREAD and t.is_alive()}


class Hold:
    """The first call of a patched engine function, stopped on its worker thread.

    Every call through the patch is recorded with its arguments, so a test can see which
    connection each one ran on.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._reached = asyncio.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.calls: list[tuple[Any, ...]] = []

    def record(self, args: tuple[Any, ...]) -> bool:
        """Record a call (any thread); whether it is the first one, the one to hold."""
        with self._lock:
            self.calls.append(args)
            return len(self.calls) == 1

    def pause(self) -> None:
        """On the worker thread: report that the call got here, then wait to be released."""
        self._loop.call_soon_threadsafe(self._reached.set)
        if not self._released.wait(HOLD_LIMIT_S):
            raise TimeoutError("the test never released a held call")

    async def reached(self) -> None:
        """Wait until the held call is stopped on its thread."""
        await asyncio.wait_for(self._reached.wait(), STEP_S)

    def release(self) -> None:
        self._released.set()


class _PausedCursor:
    def __init__(self, first: list[Any], cursor: sqlite3.Cursor) -> None:
        self._first, self._cursor = first, cursor

    def fetchall(self) -> list[Any]:
        return self._first + self._cursor.fetchall()


class _PausingConnection:
    """A connection whose query stops after its first row, its statement still running."""

    def __init__(self, conn: sqlite3.Connection, hold: Hold) -> None:
        self._conn, self._hold = conn, hold

    def execute(self, sql: str, parameters: Any = ()) -> _PausedCursor:
        cursor = self._conn.execute(sql, parameters)
        first = cursor.fetchmany(1)
        self._hold.pause()
        return _PausedCursor(first, cursor)


class Holds:
    """Patches that hold one call each; all are released when the test ends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._made: list[Hold] = []

    def _new(self) -> Hold:
        hold = Hold()
        self._made.append(hold)
        return hold

    def call(self, owner: object, name: str, *, before: bool) -> Hold:
        """Hold the next call of `owner.name` before the real call runs, or after it."""
        real: Callable[..., Any] = getattr(owner, name)
        hold = self._new()

        def held(*args: Any, **kwargs: Any) -> Any:
            if not hold.record(args):
                return real(*args, **kwargs)
            if before:
                hold.pause()
                return real(*args, **kwargs)
            result = real(*args, **kwargs)
            hold.pause()
            return result

        self._monkeypatch.setattr(owner, name, held)
        return hold

    def value_read(self, *, before: bool) -> Hold:
        """Hold the next point read from the store (its snapshot is already taken)."""
        return self.call(sqlite_transaction, "_fetch_value", before=before)

    def page_read_midway(self) -> Hold:
        """Hold the next page read of a range after its first row, mid-statement."""
        real = sqlite_transaction._fetch_page
        hold = self._new()

        def held(conn: sqlite3.Connection, **kwargs: Any) -> Any:
            if not hold.record((conn,)):
                return real(conn, **kwargs)
            return real(_PausingConnection(conn, hold), **kwargs)  # type: ignore[arg-type]

        self._monkeypatch.setattr(sqlite_transaction, "_fetch_page", held)
        return hold

    def release_all(self) -> None:
        for hold in self._made:
            hold.release()


@pytest.fixture
def sqlite_engine(engine: Engine) -> SqliteEngine:
    """The engine, for tests that reach into the sqlite engine's internals."""
    if not isinstance(engine, SqliteEngine):
        pytest.skip("exercises the sqlite engine's internals")
    return engine


@pytest.fixture
def holds(sqlite_engine: SqliteEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Holds]:
    made = Holds(monkeypatch)
    try:
        yield made
    finally:
        made.release_all()  # before the engine closes: no worker stays stuck


# -- reads in flight ---------------------------------------------------------------------------


async def test_read_in_flight_at_commit_still_conflicts(
    sqlite_engine: SqliteEngine, holds: Holds
) -> None:
    """A read issued before commit() but finishing after it was called still conflicts: commit
    waits for it (as FDB's does), its key changed after the read version, so the commit fails
    with 1020 and writes nothing."""
    engine = sqlite_engine
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    await tr.get(b"a")  # takes the read version
    await store(engine, {b"k": b"2"})  # k changes after it
    hold = holds.value_read(before=False)
    reading = asyncio.create_task(tr.get(b"k"))
    await hold.reached()
    tr.set(b"out", b"derived")
    committing = asyncio.create_task(tr.commit())
    hold.release()
    await expect_error(1020, asyncio.wait_for(committing, STEP_S))
    assert await asyncio.wait_for(reading, STEP_S) == b"1"  # the value at the read version
    assert await read(engine, b"out") is None


async def test_first_read_still_queued_at_commit_is_serializable(
    sqlite_engine: SqliteEngine, holds: Holds
) -> None:
    """The same with the transaction's first read, still waiting for its snapshot when
    commit() is called. A read issued before commit() belongs to the transaction: if the
    commit succeeds, the read must show `k` as it was just before the commit version, never a
    value another transaction wrote after it."""
    engine = sqlite_engine
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    hold = holds.call(engine, "checkout_reader", before=True)  # the snapshot is not taken yet
    reading = asyncio.create_task(tr.get(b"k"))
    await hold.reached()
    tr.set(b"out", b"derived")
    committing = asyncio.create_task(tr.commit())
    # A correct engine may wait here for the read version; give a wrong one time to commit.
    await asyncio.wait({committing}, timeout=SHORT_S)
    other = engine.create_transaction()
    other.set(b"k", b"2")
    await asyncio.wait_for(other.commit(), STEP_S)
    hold.release()
    value, committed = await asyncio.wait_for(
        asyncio.gather(reading, committing, return_exceptions=True), STEP_S
    )
    if committed is None and not isinstance(value, BaseException):
        before_commit = b"2" if tr.get_committed_version() > other.get_committed_version() else b"1"
        assert value == before_commit, (
            f"committed at {tr.get_committed_version()} having read {value!r}, but k was "
            f"{before_commit!r} then (changed at {other.get_committed_version()})"
        )


async def test_reset_during_a_read_starts_from_a_fresh_snapshot(
    sqlite_engine: SqliteEngine, holds: Holds
) -> None:
    """reset() while the first read runs: the read fails with 1025, and the reset transaction
    reads at a new read version that includes commits made before the reset."""
    engine = sqlite_engine
    await store(engine, {b"k": b"1", b"j": b"1"})
    tr = engine.create_transaction()
    hold = holds.value_read(before=False)  # the old snapshot is taken and read
    reading = asyncio.create_task(tr.get(b"k"))
    await hold.reached()
    await store(engine, {b"k": b"2", b"j": b"2"})
    tr.reset()
    hold.release()
    await expect_error(1025, reading)
    assert await tr.get(b"k") == b"2"
    assert await tr.get(b"j") == b"2"


async def test_cancel_during_a_read_keeps_its_connection_from_others(
    sqlite_engine: SqliteEngine, holds: Holds
) -> None:
    """cancel() while a read runs on a worker: the connection is not handed to another
    transaction until the read is done, and the cancelled read fails with 1025."""
    engine = sqlite_engine
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    await tr.get(b"a")
    hold = holds.value_read(before=True)
    reading = asyncio.create_task(tr.get(b"k"))
    await hold.reached()
    tr.cancel()
    tr2 = engine.create_transaction()
    assert await asyncio.wait_for(tr2.get(b"a"), STEP_S) is None
    held_conn, tr2_conn = hold.calls[0][0], hold.calls[1][0]
    assert tr2_conn is not held_conn, "tr2 was given the connection tr's read was still using"
    await store(engine, {b"k": b"2"})
    hold.release()
    await expect_error(1025, reading)
    assert await read(engine, b"k") == b"2"


async def test_cancel_during_a_page_read_leaves_no_stale_snapshot_in_the_pool(
    sqlite_engine: SqliteEngine, holds: Holds
) -> None:
    """cancel() while a range read's statement is mid-way: a transaction started after a
    later commit reads that commit, not an old snapshot left open on a pooled connection."""
    engine = sqlite_engine
    await store(engine, {b"r%d" % i: b"x" for i in range(10)})
    await store(engine, {b"k": b"old"})
    tr = engine.create_transaction()
    await tr.get(b"a")
    hold = holds.page_read_midway()
    reading = asyncio.create_task(tr.get_range(b"r", b"s").to_list())
    await hold.reached()
    tr.cancel()
    await store(engine, {b"k": b"new"})
    tr2 = engine.create_transaction()
    assert await asyncio.wait_for(tr2.get(b"k"), STEP_S) == b"new"
    hold.release()
    await expect_error(1025, reading)
    for _ in range(3):  # whichever pooled connection they get
        assert await read(engine, b"k") == b"new"


# -- transactions that never commit ------------------------------------------------------------


@pytest.mark.parametrize("limits", [Limits(max_watches=3)])
async def test_dropped_transaction_fails_its_watches(
    sqlite_engine: SqliteEngine, limits: Limits
) -> None:
    """A transaction dropped without commit or cancel fails its unarmed watches with 1025
    once collected, freeing their slots: watches up to max_watches work again."""
    engine = sqlite_engine
    await store(engine, {b"k0": b"v"})
    before = engine.pending_watches
    watches = []
    for i in range(limits.max_watches):
        tr = engine.create_transaction()
        if i == 0:
            await tr.get(b"k0")  # one of them holds a snapshot too
        watches.append(tr.watch(b"k%d" % i))
        del tr
    gc.collect()
    for watch in watches:
        await expect_error(1025, watch)
    # Slots are freed by the futures' done callbacks, on the loop's next turns.
    await eventually(lambda: engine.pending_watches == before)

    tr = engine.create_transaction()
    fresh = tr.watch(b"k0")
    await tr.commit()
    await store(engine, {b"k0": b"changed"})
    await asyncio.wait_for(fresh, STEP_S)


async def test_versionstamp_of_a_failed_commit_fails_at_once(engine: Engine) -> None:
    """get_versionstamp() fails with the commit's error when the commit failed, whether asked
    before or after it, and with 1025 after cancel(): it never waits forever."""
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    await tr.get(b"k")
    tr.set(b"k", b"2")
    asked_before = tr.get_versionstamp()
    await store(engine, {b"k": b"3"})
    await expect_error(1020, tr.commit())
    await expect_error(1020, asked_before)
    await expect_error(1020, tr.get_versionstamp())

    cancelled = engine.create_transaction()
    cancelled.set(b"q", b"1")
    cancelled.cancel()
    await expect_error(1025, cancelled.get_versionstamp())


async def test_range_read_inside_an_own_clear_reads_nothing_and_adds_no_conflict(
    sqlite_engine: SqliteEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range read wholly inside a range the transaction cleared is answered by its own
    writes: it reads no stored page, and a later commit inside the range does not make the
    transaction conflict (as in FoundationDB)."""
    engine = sqlite_engine
    await store(engine, {b"b": b"1", b"m": b"1"})
    tr = engine.create_transaction()
    await tr.get(b"zz")  # takes the read version
    tr.clear_range(b"a", b"y")
    tr.set(b"c", b"mine")

    pages: list[tuple[bytes, bytes]] = []
    real_fetch_page = sqlite_transaction._fetch_page

    def counting(conn: sqlite3.Connection, **kwargs: Any) -> Any:
        pages.append((kwargs["begin"], kwargs["end"]))
        return real_fetch_page(conn, **kwargs)

    monkeypatch.setattr(sqlite_transaction, "_fetch_page", counting)
    mine = [(b"c", b"mine")]
    assert [(kv.key, kv.value) for kv in await tr.get_range(b"a", b"y").to_list()] == mine
    assert [(kv.key, kv.value) async for kv in tr.get_range(b"a", b"y", reverse=True)] == mine
    assert [(kv.key, kv.value) for kv in await tr.get_range(b"b", b"n").to_list()] == mine
    assert await tr.get_range(b"d", b"x", limit=1).to_list() == []
    assert pages == []

    await store(engine, {b"m": b"2", b"n": b"2"})
    await tr.commit()
    assert await read_range(engine, b"a", b"y") == mine


async def test_reset_clears_the_timeout_and_retry_limit(engine: Engine) -> None:
    """reset() makes a new transaction, options included: a timeout and retry limit set
    before it no longer apply."""
    await store(engine, {b"k": b"v"})
    timeout = 0.05
    tr = engine.create_transaction()
    tr.set_timeout(timeout)
    tr.set_retry_limit(0)
    with pytest.raises(FDBError) as caught:
        await tr.on_error(FDBError(ErrorCode.NOT_COMMITTED))
    assert caught.value.code == 1020  # the retry limit was in force
    await asyncio.sleep(2 * timeout)  # let the timeout pass
    await expect_error(1031, tr.get(b"k"))  # and the timeout too

    tr.reset()
    await asyncio.sleep(2 * timeout)  # the old timeout must not fire now
    assert await tr.get(b"k") == b"v"
    await asyncio.wait_for(tr.on_error(FDBError(ErrorCode.NOT_COMMITTED)), STEP_S)
    assert await tr.get(b"k") == b"v"


# -- the engine's lifecycle --------------------------------------------------------------------


async def test_watches_see_other_processes_after_close_and_reopen(
    engine: Engine, engine_url: str
) -> None:
    """close() then open() starts watching the file again: a change made by another engine
    on the same file (another process) fires a watch armed after the reopen."""
    async with create_engine(engine_url) as other:
        tr = engine.create_transaction()
        before_close = tr.watch(b"k")
        await tr.commit()  # starts watching for other processes' commits
        await engine.close()
        with pytest.raises(FDBError):
            await asyncio.wait_for(before_close, STEP_S)
        await engine.open()

        tr = engine.create_transaction()
        after_reopen = tr.watch(b"k")
        await tr.commit()
        await store(other, {b"k": b"changed"})
        await asyncio.wait_for(after_reopen, STEP_S)


async def test_commit_on_a_closed_engine_fails_promptly(engine: Engine) -> None:
    """Committing a transaction whose engine has been closed raises FDBError instead of
    waiting forever, and writes nothing."""
    tr = engine.create_transaction()
    tr.set(b"z", b"1")
    await engine.close()
    with pytest.raises(FDBError):
        await asyncio.wait_for(tr.commit(), STEP_S)
    await engine.open()
    assert await read(engine, b"z") is None


async def test_commit_with_a_watch_racing_close_fails_with_fdb_error(
    sqlite_engine: SqliteEngine, holds: Holds
) -> None:
    """A commit that is starting the engine's watcher when close() runs fails with FDBError,
    as any commit on a closed engine does, and so does its watch."""
    engine = sqlite_engine
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    tr.set(b"a", b"1")
    hold = holds.call(sqlite_watches.Watcher, "start", before=False)
    committing = asyncio.create_task(tr.commit())
    await hold.reached()
    await asyncio.wait_for(engine.close(), STEP_S)
    hold.release()
    (outcome,) = await asyncio.wait_for(asyncio.gather(committing, return_exceptions=True), STEP_S)
    assert isinstance(outcome, FDBError), repr(outcome)
    with pytest.raises(FDBError):
        await asyncio.wait_for(watch, STEP_S)


async def test_commit_finishing_after_close_starts_no_watcher(
    sqlite_engine: SqliteEngine, holds: Holds
) -> None:
    """A commit with a watch whose baseline read is still running when close() returns
    fails with FDBError and leaves no watcher thread running for the closed engine."""
    engine = sqlite_engine
    await store(engine, {b"k": b"old"})
    running_before = watcher_threads()
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    tr.set(b"a", b"1")
    hold = holds.value_read(before=True)  # the watch's baseline
    committing = asyncio.create_task(tr.commit())
    await hold.reached()
    await asyncio.wait_for(engine.close(), STEP_S)
    hold.release()
    (outcome,) = await asyncio.wait_for(asyncio.gather(committing, return_exceptions=True), STEP_S)
    assert isinstance(outcome, FDBError), repr(outcome)
    with pytest.raises(FDBError):
        await asyncio.wait_for(watch, STEP_S)
    leaked = watcher_threads() - running_before
    for thread in leaked:  # so the leak does not outlive the test
        if isinstance(engine._watcher, sqlite_watches.Watcher):
            engine._watcher.stop()
        thread.join(STEP_S)
    assert not leaked, "a watcher thread was started for an engine already closed"


async def test_read_modify_write_commits_when_versions_run_ahead_of_the_clock(
    sqlite_engine: SqliteEngine,
) -> None:
    """Versions 10 s ahead of the wall clock (the clock was set back, or another host's ran
    ahead) do not make every read-write transaction too old (1007) to commit."""
    engine = sqlite_engine
    await store(engine, {b"k": b"1"})
    ahead = time.time_ns() // 1000 + 10_000_000
    with contextlib.closing(sqlite3.connect(engine.path)) as conn, conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'version'", (ahead,))

    tr = engine.create_transaction()
    value = await tr.get(b"k")
    assert value == b"1"
    assert await tr.get_read_version() == ahead
    tr.set(b"k", value + b"!")
    await asyncio.wait_for(tr.commit(), STEP_S)
    assert tr.get_committed_version() > ahead

    async def again(tr: Transaction) -> None:
        tr.set(b"k", (await tr.get(b"k") or b"") + b"!")

    await engine.transact(again, timeout=STEP_S)
    assert await read(engine, b"k") == b"1!!"


# -- read your writes, against a model ---------------------------------------------------------

MODEL_KEYS = [bytes([ord("a") + i]) for i in range(12)] + [b"c\x00", b"cc"]
MODEL_BOUNDS = [*MODEL_KEYS, b"", b"z"]
MODEL_ATOMICS = [
    AtomicOp.ADD,
    AtomicOp.BIT_OR,
    AtomicOp.BIT_XOR,
    AtomicOp.MIN,
    AtomicOp.MAX,
    AtomicOp.BYTE_MAX,
    AtomicOp.BYTE_MIN,
    AtomicOp.APPEND_IF_FITS,
    AtomicOp.COMPARE_AND_CLEAR,
]
MODEL_ROUNDS = 120


def model_resolve(keys: list[bytes], selector: KeySelector) -> bytes:
    """FDB's selector resolution over sorted `keys`."""
    if selector.or_equal:
        base = [k for k in keys if k <= selector.key]
    else:
        base = [k for k in keys if k < selector.key]
    index = len(base) - 1 + selector.offset
    if index < 0:
        return b""
    return keys[index] if index < len(keys) else b"\xff"


def mutate(rng: random.Random, tr: Transaction, model: dict[bytes, bytes], log: list[Any]) -> None:
    """One random write to both `tr` and `model`."""
    roll, key = rng.random(), rng.choice(MODEL_KEYS)
    if roll < 0.3:
        value = bytes([rng.randrange(256)])
        tr.set(key, value)
        model[key] = value
        log.append(("set", key, value))
    elif roll < 0.45:
        tr.clear(key)
        model.pop(key, None)
        log.append(("clear", key))
    elif roll < 0.65:
        begin, end = sorted([key, rng.choice(MODEL_KEYS)])
        tr.clear_range(begin, end)
        for gone in [k for k in model if begin <= k < end]:
            del model[gone]
        log.append(("clear_range", begin, end))
    else:
        op, param = rng.choice(MODEL_ATOMICS), bytes([rng.randrange(4)] * rng.randrange(1, 3))
        getattr(tr, op.value)(key, param)
        result = apply_atomic(op, model.get(key), param)
        if result is None:
            model.pop(key, None)
        else:
            model[key] = result
        log.append((op.value, key, param))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_reads_match_a_model_of_own_writes_over_stored_rows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random stored rows and random sets, clears, clear ranges and atomic ops: point reads,
    range reads (forward, reverse, limited, snapshot) and key selectors all see the stored
    rows overlaid with the transaction's writes, and a commit stores exactly that view."""
    if isinstance(engine, SqliteEngine):  # tiny pages: every read crosses page boundaries
        monkeypatch.setattr(sqlite_transaction, "FIRST_PAGE", 2)
        monkeypatch.setattr(sqlite_transaction, "LARGEST_PAGE", 4)
    rng = random.Random(seed)
    for round_ in range(MODEL_ROUNDS):
        stored = {k: bytes([rng.randrange(256)]) for k in MODEL_KEYS if rng.random() < 0.5}

        async def replace(tr: Transaction, stored: dict[bytes, bytes] = stored) -> None:
            tr.clear_range(b"", b"\xff")
            for key, value in stored.items():
                tr.set(key, value)

        await engine.transact(replace)
        model = dict(stored)
        log: list[Any] = [("round", seed, round_), ("stored", stored)]
        tr = engine.create_transaction()
        for _ in range(rng.randrange(8)):
            mutate(rng, tr, model, log)
            if rng.random() < 0.3:
                key = rng.choice(MODEL_KEYS)
                assert await tr.get(key) == model.get(key), (key, log)

        begin, end = sorted([rng.choice(MODEL_BOUNDS), rng.choice(MODEL_BOUNDS)])
        limit, reverse = rng.randrange(5), rng.random() < 0.5
        view = sorted((k, v) for k, v in model.items() if begin <= k < end)
        if reverse:
            view.reverse()
        expected = view[:limit] if limit else view
        reader = tr.snapshot if rng.random() < 0.3 else tr
        got = await reader.get_range(begin, end, limit=limit, reverse=reverse).to_list()
        assert [(kv.key, kv.value) for kv in got] == expected, (begin, end, limit, reverse, log)

        keys = sorted(model)
        for selector in (
            KeySelector.first_greater_or_equal(begin),
            KeySelector.first_greater_than(begin) + 1,
            KeySelector.last_less_than(end),
            KeySelector.last_less_or_equal(end) + 1,
            KeySelector.last_less_than(begin) - 1,
        ):
            assert await tr.get_key(selector) == model_resolve(keys, selector), (selector, log)

        if rng.random() < 0.5:
            await tr.commit()
            assert await read_range(engine, b"", b"\xff") == sorted(model.items()), log
        else:
            tr.cancel()
