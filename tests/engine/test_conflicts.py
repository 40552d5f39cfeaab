"""Conflicts: which reads make a transaction fail with 1020 when others commit writes, and the
retry loop that runs transactions again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fdbsync.engine import Engine, ErrorCode, FDBError, KeySelector, Transaction

from .committed import expect_error, read, store

Read = Callable[[Transaction], Awaitable[Any]]
Write = Callable[[Transaction], None]

# -- helpers -----------------------------------------------------------------------------------


async def conflicts(engine: Engine, reads: Read, writes: Write) -> bool:
    """Whether a transaction that does `reads` (and then one unrelated write) fails with 1020
    when another transaction commits `writes` between its reads and its commit."""
    reader = engine.create_transaction()
    await reads(reader)
    reader.set(b"reader-wrote", b"1")  # read-only transactions commit without any check
    writer = engine.create_transaction()
    writes(writer)
    await writer.commit()
    try:
        await reader.commit()
    except FDBError as error:
        assert error.code == 1020, error
        assert await read(engine, b"reader-wrote") is None
        return True
    assert await read(engine, b"reader-wrote") == b"1"
    return False


def counting(fn: Callable[[Transaction], Awaitable[Any]]) -> tuple[list[int], Any]:
    """Wrap a transaction function so the list counts how many times it ran."""
    calls = [0]

    async def wrapped(tr: Transaction) -> Any:
        calls[0] += 1
        return await fn(tr)

    return calls, wrapped


ROWS = {b"r/" + letter.encode(): letter.encode() for letter in "abcdefghij"}


@pytest.fixture
async def rows(engine: Engine) -> dict[bytes, bytes]:
    await store(engine, ROWS)
    return ROWS


def setting(key: bytes) -> Write:
    return lambda tr: tr.set(key, b"written")


def ranging(begin: bytes, end: bytes, **options: Any) -> Read:
    async def reads(tr: Transaction) -> Any:
        return await tr.get_range(begin, end, **options).to_list()

    return reads


def getting(key: bytes) -> Read:
    async def reads(tr: Transaction) -> Any:
        return await tr.get(key)

    return reads


# -- contention --------------------------------------------------------------------------------


class FirstRound:
    """Holds the first `parties` calls until all of them have arrived, so their reads all
    happen before any of them commits; later calls (retries) pass straight through."""

    def __init__(self, parties: int) -> None:
        self._parties = parties
        self._arrived = 0
        self._barrier = asyncio.Barrier(parties)

    async def wait(self) -> None:
        if self._arrived < self._parties:
            self._arrived += 1
            await asyncio.wait_for(self._barrier.wait(), 10)


async def test_read_modify_write_on_distinct_keys_never_conflicts(engine: Engine) -> None:
    """50 overlapping read-modify-write transactions on 50 different keys all commit first
    time: a transaction only conflicts on what it read."""
    await store(engine, {b"n/%d" % i: b"0" for i in range(50)})
    first_round = FirstRound(50)

    def increment(index: int) -> Callable[[Transaction], Awaitable[None]]:
        async def fn(tr: Transaction) -> None:
            value = int(await tr.get(b"n/%d" % index) or b"0")
            await first_round.wait()
            tr.set(b"n/%d" % index, b"%d" % (value + 1))

        return fn

    counted = [counting(increment(i)) for i in range(50)]
    await asyncio.gather(*(engine.transact(fn, timeout=30) for _, fn in counted))
    assert [calls[0] for calls, _ in counted] == [1] * 50
    assert [await read(engine, b"n/%d" % i) for i in range(50)] == [b"1"] * 50


async def test_read_modify_write_on_one_key_retries_until_exact(engine: Engine) -> None:
    """50 overlapping read-modify-write transactions on one counter conflict and retry, and
    the counter ends at exactly 50: no increment is lost or applied twice."""
    await store(engine, {b"counter": b"0"})
    first_round = FirstRound(50)

    async def increment(tr: Transaction) -> None:
        value = int(await tr.get(b"counter") or b"0")
        await first_round.wait()
        tr.set(b"counter", b"%d" % (value + 1))

    calls, fn = counting(increment)
    await asyncio.gather(*(engine.transact(fn, timeout=60) for _ in range(50)))
    assert await read(engine, b"counter") == b"50"
    assert calls[0] > 50


async def test_simultaneous_commits_of_one_batch_conflict(engine: Engine) -> None:
    """Two transactions that read and write one key, committed at the same moment, cannot
    both succeed: exactly one fails with 1020 and the winner's value stays."""
    await store(engine, {b"k": b"start"})
    first, second = engine.create_transaction(), engine.create_transaction()
    for tr, name in ((first, b"first"), (second, b"second")):
        assert await tr.get(b"k") == b"start"
        tr.set(b"k", name)
    outcomes = await asyncio.gather(first.commit(), second.commit(), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, FDBError)]
    assert len(failures) == 1 and failures[0].code == 1020
    winner = b"first" if outcomes[0] is None else b"second"
    assert await read(engine, b"k") == winner


# -- point reads -------------------------------------------------------------------------------


async def test_read_key_changed_by_another_commit_conflicts(engine: Engine) -> None:
    """A key read and then changed by another commit makes the reader fail with 1020, and
    none of the reader's writes land."""
    await store(engine, {b"k": b"1"})
    assert await conflicts(engine, getting(b"k"), setting(b"k"))
    assert await read(engine, b"k") == b"written"


async def test_read_of_a_missing_key_conflicts_with_its_insert(engine: Engine) -> None:
    """Reading a key that does not exist conflicts with a later insert of it."""
    await store(engine, {b"other": b""})
    assert await conflicts(engine, getting(b"k"), setting(b"k"))


@pytest.mark.parametrize(("written", "expected"), [(b"b", True), (b"z", True), (b"c", False)])
async def test_get_many_conflicts_on_each_key_it_read(
    engine: Engine, written: bytes, expected: bool
) -> None:
    await store(engine, {b"b": b"1"})

    async def reads(tr: Transaction) -> Any:
        return await tr.get_many([b"b", b"z"])

    assert await conflicts(engine, reads, setting(written)) is expected


async def test_unrelated_write_does_not_conflict(engine: Engine) -> None:
    """A write to a key nobody read conflicts with nothing, even a neighbouring key."""
    await store(engine, {b"k": b"1"})
    assert not await conflicts(engine, getting(b"k"), setting(b"k\x00"))
    assert not await conflicts(engine, getting(b"k"), setting(b"j\xff"))


async def test_read_only_transactions_always_commit(engine: Engine) -> None:
    """A transaction without writes commits even though what it read has changed."""
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    assert await tr.get(b"k") == b"1"
    await store(engine, {b"k": b"2"})
    await tr.commit()


# -- range reads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (b"r/c", True),  # the begin key
        (b"r/d5", True),  # a new key inside
        (b"r/e\xff", True),  # just before the end
        (b"r/f", False),  # the end key: exclusive
        (b"r/b\xff", False),  # just before the begin
        (b"r/g", False),  # after the range
    ],
)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
async def test_range_read_conflicts_inside_its_range_only(
    engine: Engine, rows: dict[bytes, bytes], written: bytes, expected: bool, reverse: bool
) -> None:
    """A range read of [r/c, r/f) conflicts with writes at or after r/c and before r/f."""
    assert await conflicts(engine, ranging(b"r/c", b"r/f", reverse=reverse), setting(written)) == (
        expected
    )


async def test_empty_range_read_conflicts_with_an_insert(engine: Engine) -> None:
    """A range read that found nothing conflicts with a key inserted into that range."""
    await store(engine, {b"a": b"", b"z": b""})
    assert await conflicts(engine, ranging(b"m", b"p"), setting(b"n"))


async def test_whole_range_read_covers_up_to_its_end(
    engine: Engine, rows: dict[bytes, bytes]
) -> None:
    """A range read that returned every row still conflicts past the last row, up to its end."""
    assert await conflicts(engine, ranging(b"r/", b"r0"), setting(b"r/zz"))
    assert await conflicts(engine, ranging(b"r/", b"r0", reverse=True), setting(b"r/"))


@pytest.mark.parametrize(
    ("reverse", "written", "expected"),
    [
        (False, b"r/bb", True),  # between returned rows
        (False, b"r/c", True),  # the last returned row
        (False, b"r/cc", False),  # after the last returned row
        (False, b"r/j", False),
        (True, b"r/hh", True),
        (True, b"r/h", True),
        (True, b"r/gg", False),
        (True, b"r/a", False),
    ],
)
async def test_limited_range_read_conflicts_only_up_to_its_last_row(
    engine: Engine, rows: dict[bytes, bytes], reverse: bool, written: bytes, expected: bool
) -> None:
    """A range read cut short by its limit only read up to the last row it returned."""
    reads = ranging(b"r/", b"r0", limit=3, reverse=reverse)
    assert await conflicts(engine, reads, setting(written)) == expected


async def test_get_key_conflicts_with_a_key_that_would_change_its_answer(
    engine: Engine, rows: dict[bytes, bytes]
) -> None:
    """Resolving first_greater_than(r/c) read the gap up to r/d: an insert there conflicts."""

    async def reads(tr: Transaction) -> None:
        assert await tr.get_key(KeySelector.first_greater_than(b"r/c")) == b"r/d"

    assert await conflicts(engine, reads, setting(b"r/c5"))


# -- snapshot reads and explicit conflict ranges -----------------------------------------------


async def test_snapshot_reads_add_no_conflicts(engine: Engine, rows: dict[bytes, bytes]) -> None:
    """Snapshot gets, range reads and selectors never make the transaction conflict."""

    async def reads(tr: Transaction) -> None:
        await tr.snapshot.get(b"r/a")
        await tr.snapshot.get_many([b"r/a", b"r/j"])
        await tr.snapshot.get_range(b"r/", b"r0").to_list()
        await tr.snapshot.get_key(KeySelector.first_greater_than(b"r/c"))

    def writes(tr: Transaction) -> None:
        tr.set(b"r/a", b"changed")
        tr.set(b"r/c5", b"inserted")
        tr.clear(b"r/j")

    assert not await conflicts(engine, reads, writes)


@pytest.mark.parametrize(
    ("written", "expected"),
    [(b"m", True), (b"n", True), (b"o\xff", True), (b"p", False), (b"l\xff", False)],
)
async def test_explicit_read_conflict_range(engine: Engine, written: bytes, expected: bool) -> None:
    """add_read_conflict_range(m, p) conflicts like a read of [m, p) without reading it."""
    await store(engine, {b"seed": b""})

    async def reads(tr: Transaction) -> None:
        await tr.get_read_version()
        tr.add_read_conflict_range(b"m", b"p")

    assert await conflicts(engine, reads, setting(written)) == expected


async def test_explicit_read_conflict_key(engine: Engine) -> None:
    """add_read_conflict_key(k) conflicts with writes to k and to no other key."""
    await store(engine, {b"seed": b""})

    async def reads(tr: Transaction) -> None:
        await tr.get_read_version()
        tr.add_read_conflict_key(b"k")

    assert await conflicts(engine, reads, setting(b"k"))
    assert not await conflicts(engine, reads, setting(b"k\x00"))


async def test_explicit_write_conflict_key(engine: Engine) -> None:
    """A transaction that only adds a write conflict key makes readers of it conflict, and
    changes no data."""
    await store(engine, {b"k": b"1"})

    def writes(tr: Transaction) -> None:
        tr.add_write_conflict_key(b"k")

    assert await conflicts(engine, getting(b"k"), writes)
    assert not await conflicts(engine, getting(b"k\x00"), writes)
    assert await read(engine, b"k") == b"1"


async def test_explicit_write_conflict_range(engine: Engine) -> None:
    """add_write_conflict_range(m, p) conflicts with reads inside [m, p) only."""
    await store(engine, {b"seed": b""})

    def writes(tr: Transaction) -> None:
        tr.add_write_conflict_range(b"m", b"p")

    assert await conflicts(engine, getting(b"m"), writes)
    assert await conflicts(engine, ranging(b"a", b"n"), writes)
    assert not await conflicts(engine, getting(b"p"), writes)
    assert not await conflicts(engine, ranging(b"a", b"m"), writes)


# -- atomic ops, clears and blind writes -------------------------------------------------------


async def test_atomic_ops_add_no_read_conflicts(engine: Engine) -> None:
    """Two transactions that only add to one key never conflict, whatever the order."""
    await store(engine, {b"n": (0).to_bytes(8, "little")})
    first, second = engine.create_transaction(), engine.create_transaction()
    for tr in (first, second):
        await tr.get_read_version()
        tr.add(b"n", (1).to_bytes(8, "little"))
    await first.commit()
    await second.commit()
    assert await read(engine, b"n") == (2).to_bytes(8, "little")


async def test_atomic_op_conflicts_with_a_reader_of_its_key(engine: Engine) -> None:
    """An atomic op writes its key: a transaction that read the key conflicts."""
    await store(engine, {b"n": b"\x01"})
    assert await conflicts(engine, getting(b"n"), lambda tr: tr.add(b"n", b"\x01"))


async def test_reading_after_an_atomic_op_reads_the_key(engine: Engine) -> None:
    """Reading a key after an atomic op on it needs its stored value, so that read conflicts."""
    await store(engine, {b"n": b"\x01"})

    async def reads(tr: Transaction) -> None:
        tr.add(b"n", b"\x01")
        assert await tr.get(b"n") == b"\x02"

    assert await conflicts(engine, reads, setting(b"n"))


async def test_clear_conflicts_with_a_reader(engine: Engine) -> None:
    """Clearing a key conflicts with a transaction that read it, present or missing."""
    await store(engine, {b"k": b"1"})
    assert await conflicts(engine, getting(b"k"), lambda tr: tr.clear(b"k"))
    assert await conflicts(engine, getting(b"missing"), lambda tr: tr.clear(b"missing"))


async def test_clear_range_conflicts_with_a_reader_inside_it(engine: Engine) -> None:
    """clear_range(a, m) conflicts with readers of keys in [a, m), not with a reader of m."""
    await store(engine, {b"c": b"1", b"m": b"2"})
    assert await conflicts(engine, getting(b"c"), lambda tr: tr.clear_range(b"a", b"m"))
    assert await conflicts(engine, getting(b"missing"), lambda tr: tr.clear_range(b"a", b"n"))
    assert not await conflicts(engine, getting(b"m"), lambda tr: tr.clear_range(b"a", b"m"))


async def test_blind_writes_never_conflict(engine: Engine) -> None:
    """Transactions that write without reading all commit; the last commit's value stays."""
    await store(engine, {b"k": b"0"})
    first, second = engine.create_transaction(), engine.create_transaction()
    for tr, name in ((first, b"first"), (second, b"second")):
        await tr.get_read_version()
        tr.set(b"k", name)
        tr.clear_range(b"a", b"j")
        tr.add(b"n", b"\x01")
    await first.commit()
    await second.commit()
    assert await read(engine, b"k") == b"second"
    assert await read(engine, b"n") == b"\x02"

    calls, fn = counting(lambda tr: _set_async(tr, b"k", b"many"))
    await asyncio.gather(*(engine.transact(fn, timeout=30) for _ in range(20)))
    assert calls[0] == 20


async def _set_async(tr: Transaction, key: bytes, value: bytes) -> None:
    tr.set(key, value)


# -- the retry loop ----------------------------------------------------------------------------


def always_conflicting(engine: Engine) -> Callable[[Transaction], Awaitable[None]]:
    """A transaction function whose every attempt conflicts: after reading `k`, another
    transaction changes `k` before the attempt commits."""

    async def fn(tr: Transaction) -> None:
        value = await tr.get(b"k") or b""
        await store(engine, {b"k": value + b"+"})
        tr.set(b"mine", b"1")

    return fn


@pytest.mark.parametrize("retry_limit", [0, 2])
async def test_retry_limit_reraises_the_conflict(engine: Engine, retry_limit: int) -> None:
    """With a retry limit of n, transact runs the function n + 1 times, then raises 1020."""
    await store(engine, {b"k": b""})
    calls, fn = counting(always_conflicting(engine))
    with pytest.raises(FDBError) as caught:
        await engine.transact(fn, retry_limit=retry_limit)
    assert caught.value.code == 1020 and caught.value.name == "not_committed"
    assert calls[0] == retry_limit + 1
    assert await read(engine, b"mine") is None


async def test_timeout_ends_the_retry_loop(engine: Engine) -> None:
    """With a timeout, transact gives up on endless conflicts with 1031 soon after it."""
    await store(engine, {b"k": b""})
    calls, fn = counting(always_conflicting(engine))
    started = time.monotonic()
    with pytest.raises(FDBError) as caught:
        await engine.transact(fn, timeout=0.3)
    assert caught.value.code == 1031 and caught.value.name == "transaction_timed_out"
    assert time.monotonic() - started < 3
    assert calls[0] >= 2


async def test_transaction_timeout_fails_reads_and_commit(engine: Engine) -> None:
    """A transaction past its own timeout fails reads and commit with 1031."""
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    tr.set_timeout(0.2)
    assert await tr.get(b"k") == b"1"
    tr.set(b"k", b"2")
    await asyncio.sleep(0.3)
    with pytest.raises(FDBError) as caught:
        await tr.get(b"k")
    assert caught.value.code == 1031
    with pytest.raises(FDBError) as caught:
        await tr.commit()
    assert caught.value.code == 1031
    assert await read(engine, b"k") == b"1"


async def test_non_retryable_errors_pass_straight_through(engine: Engine) -> None:
    """transact runs the function once and re-raises errors that are not retryable."""

    async def too_large(tr: Transaction) -> None:
        tr.set(b"k" * 10_001, b"v")

    calls, fn = counting(too_large)
    with pytest.raises(FDBError) as caught:
        await engine.transact(fn)
    assert caught.value.code == 2102 and calls[0] == 1

    async def broken(tr: Transaction) -> None:
        raise ValueError("application bug")

    calls, fn = counting(broken)
    with pytest.raises(ValueError, match="application bug"):
        await engine.transact(fn)
    assert calls[0] == 1


async def test_maybe_committed_is_retried(engine: Engine) -> None:
    """1021 commit_unknown_result is retryable: transact runs the function again."""

    async def flaky(tr: Transaction) -> str:
        if calls[0] == 1:
            raise FDBError(1021)
        tr.set(b"k", b"done")
        return "ok"

    calls, fn = counting(flaky)
    assert await engine.transact(fn) == "ok"
    assert calls[0] == 2
    assert await read(engine, b"k") == b"done"


async def test_on_error_resets_the_transaction(engine: Engine) -> None:
    """After on_error, the transaction starts over: earlier writes are gone and reads use a
    new read version."""
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    assert await tr.get(b"k") == b"1"
    tr.set(b"discarded", b"1")
    await store(engine, {b"k": b"2"})
    await tr.on_error(FDBError(1020))
    assert await tr.get(b"k") == b"2"
    assert await tr.get(b"discarded") is None
    tr.set(b"kept", b"1")
    await tr.commit()
    assert await read(engine, b"discarded") is None
    assert await read(engine, b"kept") == b"1"


async def test_on_error_reraises_non_retryable_errors(engine: Engine) -> None:
    """on_error raises the error itself when it is not retryable."""
    tr = engine.create_transaction()
    error = FDBError(2101)
    with pytest.raises(FDBError) as caught:
        await tr.on_error(error)
    assert caught.value is error


@pytest.mark.parametrize(
    ("code", "name", "retryable", "maybe_committed"),
    [
        (1007, "transaction_too_old", True, False),
        (1009, "future_version", True, False),
        (1020, "not_committed", True, False),
        (1021, "commit_unknown_result", True, True),
        (1025, "transaction_cancelled", False, False),
        (1031, "transaction_timed_out", False, False),
        (1037, "process_behind", True, False),
        (2101, "transaction_too_large", False, False),
        (2102, "key_too_large", False, False),
        (4242, "unknown_error", False, False),
    ],
)
def test_error_predicates(code: int, name: str, retryable: bool, maybe_committed: bool) -> None:
    """FDBError's name and predicates follow FDB: 1021 is retryable but may have committed."""
    error = FDBError(code)
    assert (error.code, error.name) == (code, name)
    assert error.retryable is retryable
    assert error.maybe_committed is maybe_committed
    assert error.retryable_not_committed is (retryable and not maybe_committed)
    assert str(code) in str(error)


@pytest.mark.parametrize("inside", [True, False], ids=["write_inside", "write_outside"])
async def test_a_large_range_read_conflicts_only_with_writes_inside_it(
    engine: Engine, inside: bool
) -> None:
    """Ranges of thousands of rows are checked as precisely as small ones."""
    await store(engine, {b"big/%05d" % i: b"v" for i in range(3000)})
    tr = engine.create_transaction()
    rows = await tr.get_range(b"big/", b"big0").to_list()
    assert len(rows) == 3000
    tr.set(b"summary", b"%d" % len(rows))
    await store(engine, {b"big/01500x" if inside else b"bih/0": b"new"})
    if inside:
        await expect_error(ErrorCode.NOT_COMMITTED, tr.commit())
    else:
        await tr.commit()
