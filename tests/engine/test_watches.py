"""Watches: armed at commit, they fire once when their key's value changes afterwards, never
for other keys or same-value writes, and fail with their transaction's error."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from fdbsync.engine import Engine, FDBError, Limits, Transaction, Watch
from fdbsync.testing import eventually

from .committed import pending_watches, store

Write = Callable[[Transaction], None]

#: How long a watch that must fire may take (generous: it normally takes milliseconds).
FIRES_WITHIN_S = 5.0

_sentinels = itertools.count()

# -- helpers -----------------------------------------------------------------------------------


async def commit(engine: Engine, write: Write) -> None:
    """Commit `write` in a fresh transaction."""

    async def fn(tr: Transaction) -> None:
        write(tr)

    await engine.transact(fn)


async def arm(engine: Engine, key: bytes) -> Watch:
    """A watch on `key`, armed by committing a transaction that only watches it."""
    tr = engine.create_transaction()
    watch = tr.watch(key)
    await tr.commit()
    return watch


async def fires(watch: Watch) -> None:
    """Wait for `watch` to fire, failing the test if it does not do so promptly."""
    await asyncio.wait_for(watch, FIRES_WITHIN_S)


async def settle(engine: Engine) -> None:
    """Commit a change to a fresh sentinel key and wait for the sentinel's watch: once it has
    fired, any notification caused by earlier commits has been delivered too."""
    key = b"sentinel/%d" % next(_sentinels)
    sentinel = await arm(engine, key)
    await store(engine, {key: b"changed"})
    await fires(sentinel)


# -- firing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda tr: tr.set(b"k", b"new"),
        lambda tr: tr.clear(b"k"),
        lambda tr: tr.clear_range(b"j", b"l"),
        lambda tr: tr.clear_range(b"k", b"k\x00"),
        lambda tr: tr.add(b"k", b"\x01"),
        lambda tr: tr.append_if_fits(b"k", b"!"),
        lambda tr: tr.compare_and_clear(b"k", b"old"),
    ],
    ids=[
        "set",
        "clear",
        "clear_range",
        "clear_range-one-key",
        "add",
        "append",
        "compare_and_clear",
    ],
)
async def test_watch_fires_when_another_transaction_changes_the_key(
    engine: Engine, change: Write
) -> None:
    """Any committed mutation that changes the key's value fires the watch."""
    await store(engine, {b"k": b"old"})
    watch = await arm(engine, b"k")
    await settle(engine)
    assert not watch.done()
    await commit(engine, change)
    await fires(watch)


async def test_watch_on_a_missing_key_fires_when_it_is_created(engine: Engine) -> None:
    """A watch on an absent key fires when the key is set, even to an empty value."""
    await store(engine, {b"seed": b""})
    watch = await arm(engine, b"k")
    await settle(engine)
    assert not watch.done()
    await store(engine, {b"k": b""})
    await fires(watch)


async def test_every_watch_on_a_key_fires(engine: Engine) -> None:
    """Several watches on one key, from different transactions, all fire on one change."""
    await store(engine, {b"k": b"old"})
    watches = [await arm(engine, b"k") for _ in range(3)]
    tr = engine.create_transaction()
    watches += [tr.watch(b"k"), tr.watch(b"k")]
    await tr.commit()
    await store(engine, {b"k": b"new"})
    await asyncio.wait_for(asyncio.gather(*(asyncio.ensure_future(w) for w in watches)), 5)


@pytest.mark.parametrize(
    "unrelated",
    [
        lambda tr: tr.set(b"c", b"x"),
        lambda tr: tr.set(b"k\x00", b"x"),
        lambda tr: tr.set(b"j\xff", b"x"),
        lambda tr: tr.clear(b"k\x00"),
        lambda tr: tr.clear_range(b"a", b"k"),
        lambda tr: tr.clear_range(b"k\x00", b"z"),
        lambda tr: tr.add(b"kk", b"\x01"),
    ],
    ids=[
        "other",
        "next-key",
        "previous-key",
        "clear-next",
        "range-ending-at-k",
        "range-after-k",
        "add",
    ],
)
async def test_watch_ignores_other_keys(engine: Engine, unrelated: Write) -> None:
    """Writes to other keys, however close, leave the watch pending (a sentinel watch armed
    later fires first)."""
    await store(engine, {b"k": b"v", b"k\x00": b"v", b"j\xff": b"v", b"c": b"v"})
    watch = await arm(engine, b"k")
    await commit(engine, unrelated)
    await settle(engine)
    assert not watch.done()
    await store(engine, {b"k": b"changed"})
    await fires(watch)


@pytest.mark.parametrize(
    ("stored", "rewrite"),
    [
        (b"v", lambda tr: tr.set(b"k", b"v")),
        (None, lambda tr: tr.clear(b"k")),
        (None, lambda tr: tr.clear_range(b"j", b"l")),
        (b"v", lambda tr: tr.compare_and_clear(b"k", b"other")),
        (b"\x05", lambda tr: tr.max(b"k", b"\x01")),
        (b"\x05", lambda tr: tr.bit_or(b"k", b"\x00")),
    ],
    ids=["same-value", "clear-missing", "clear-range-missing", "cas-mismatch", "max", "or-zero"],
)
async def test_watch_ignores_writes_that_keep_the_value(
    engine: Engine, stored: bytes | None, rewrite: Write
) -> None:
    """A committed write that leaves the key's value as it was does not fire the watch."""
    await store(engine, {b"k": stored} if stored is not None else {b"seed": b""})
    watch = await arm(engine, b"k")
    await commit(engine, rewrite)
    await settle(engine)
    assert not watch.done()


async def test_watch_ignores_its_own_transactions_write(engine: Engine) -> None:
    """A watch set by a transaction that writes the key compares against the value that
    transaction leaves: the write itself does not fire it, a later change does."""
    await store(engine, {b"k": b"old"})
    tr = engine.create_transaction()
    tr.set(b"k", b"mine")
    watch = tr.watch(b"k")
    await tr.commit()
    await settle(engine)
    assert not watch.done()
    await store(engine, {b"k": b"theirs"})
    await fires(watch)


async def test_watch_fires_for_a_change_between_read_and_commit(engine: Engine) -> None:
    """A read-only transaction that read the key before another transaction changed it arms a
    watch that fires as soon as it commits: the change after its read is not lost."""
    await store(engine, {b"k": b"old"})
    tr = engine.create_transaction()
    assert await tr.get(b"k") == b"old"
    watch = tr.watch(b"k")
    await store(engine, {b"k": b"new"})
    await tr.commit()
    await fires(watch)


async def test_watch_fires_for_a_change_between_snapshot_read_and_writing_commit(
    engine: Engine,
) -> None:
    """The same holds when the watching transaction also writes (other keys) and commits."""
    await store(engine, {b"k": b"old"})
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    assert await tr.snapshot.get(b"k") == b"old"
    tr.set(b"elsewhere", b"1")
    await store(engine, {b"k": b"new"})
    await tr.commit()
    await fires(watch)


# -- cancelling and failing --------------------------------------------------------------------


async def test_cancelled_watch_stays_cancelled(engine: Engine) -> None:
    """cancel() makes awaiting the watch raise CancelledError, frees its slot, and a later
    change of the key does not bring it back."""
    await store(engine, {b"k": b"old"})
    watch = await arm(engine, b"k")
    await eventually(lambda: pending_watches(engine) == 1)
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    await eventually(lambda: pending_watches(engine) == 0)
    await store(engine, {b"k": b"new"})
    await settle(engine)
    assert watch.done()
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert pending_watches(engine) == 0


async def test_watch_cancelled_before_commit_never_arms(engine: Engine) -> None:
    """A watch cancelled before its transaction commits stays cancelled after the commit."""
    await store(engine, {b"k": b"old"})
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    watch.cancel()
    await tr.commit()
    await store(engine, {b"k": b"new"})
    await settle(engine)
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert pending_watches(engine) == 0


async def test_watch_fails_with_the_commit_conflict(engine: Engine) -> None:
    """A watch fails with 1020 when its transaction does not commit because of a conflict."""
    await store(engine, {b"k": b"old"})
    tr = engine.create_transaction()
    await tr.get(b"k")
    watch = tr.watch(b"w")
    tr.set(b"k", b"mine")
    await store(engine, {b"k": b"theirs"})
    with pytest.raises(FDBError) as commit_error:
        await tr.commit()
    assert commit_error.value.code == 1020
    with pytest.raises(FDBError) as watch_error:
        await asyncio.wait_for(watch, FIRES_WITHIN_S)
    assert watch_error.value.code == 1020
    await eventually(lambda: pending_watches(engine) == 0)


@pytest.mark.parametrize(
    "end", [lambda tr: tr.cancel(), lambda tr: tr.reset()], ids=["cancel", "reset"]
)
async def test_watch_fails_when_its_transaction_is_abandoned(
    engine: Engine, end: Callable[[Transaction], None]
) -> None:
    """Cancelling or resetting the transaction fails its watches with 1025."""
    await store(engine, {b"k": b"old"})
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    end(tr)
    with pytest.raises(FDBError) as caught:
        await asyncio.wait_for(watch, FIRES_WITHIN_S)
    assert caught.value.code == 1025 and caught.value.name == "transaction_cancelled"
    await store(engine, {b"k": b"new"})
    await eventually(lambda: pending_watches(engine) == 0)


async def test_watch_fails_when_its_transaction_block_is_left_uncommitted(engine: Engine) -> None:
    """Leaving `async with transaction` without committing cancels the transaction's watches."""
    async with engine.create_transaction() as tr:
        watch = tr.watch(b"k")
    with pytest.raises(FDBError) as caught:
        await asyncio.wait_for(watch, FIRES_WITHIN_S)
    assert caught.value.code == 1025


@pytest.mark.parametrize("limits", [Limits(max_watches=5)])
async def test_too_many_watches(engine: Engine, limits: Limits) -> None:
    """Past max_watches pending watches a new watch fails with 1032; cancelling one frees a
    slot for a new watch that works, and the others keep working."""
    await store(engine, {b"seed": b""})
    watches = [await arm(engine, b"w/%d" % i) for i in range(limits.max_watches)]
    assert pending_watches(engine) == limits.max_watches

    tr = engine.create_transaction()
    extra = tr.watch(b"w/extra")
    with pytest.raises(FDBError) as caught:
        await asyncio.wait_for(extra, FIRES_WITHIN_S)
    assert caught.value.code == 1032 and caught.value.name == "too_many_watches"
    tr.cancel()

    watches[0].cancel()
    await eventually(lambda: pending_watches(engine) == limits.max_watches - 1)
    replacement = await arm(engine, b"w/extra")
    await store(engine, {b"w/extra": b"changed", b"w/1": b"changed"})
    await fires(replacement)
    await fires(watches[1])
    assert not any(w.done() for w in watches[2:])


# -- callbacks ---------------------------------------------------------------------------------


async def test_done_callback_reports_fire_failure_and_cancel(engine: Engine) -> None:
    """add_done_callback calls back once the watch is done, and error() says how it ended:
    None when it fired, the commit's error when it failed, CancelledError when cancelled."""
    await store(engine, {b"k": b"old"})
    ended: dict[str, asyncio.Future[BaseException | None]] = {}

    def track(name: str, watch: Watch) -> None:
        ended[name] = asyncio.get_running_loop().create_future()
        watch.add_done_callback(lambda done: ended[name].set_result(done.error()))

    fired = await arm(engine, b"k")
    track("fired", fired)
    cancelled = await arm(engine, b"k")
    track("cancelled", cancelled)
    conflicting = engine.create_transaction()
    await conflicting.get(b"k")
    failed = conflicting.watch(b"w")
    track("failed", failed)
    conflicting.set(b"k", b"mine")
    assert not ended["fired"].done()  # not before it is done

    cancelled.cancel()
    await store(engine, {b"k": b"new"})
    with pytest.raises(FDBError):
        await conflicting.commit()
    outcomes = {
        name: await asyncio.wait_for(future, FIRES_WITHIN_S) for name, future in ended.items()
    }
    assert outcomes["fired"] is None
    assert isinstance(outcomes["cancelled"], asyncio.CancelledError)
    assert isinstance(outcomes["failed"], FDBError) and outcomes["failed"].code == 1020
