"""Reads issued together in one transaction share worker-thread hops on the sqlite engine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fdbsync.engine import Engine
from fdbsync.engine.sqlite.engine import SqliteEngine

from .committed import store


async def test_gathered_reads_share_thread_hops(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(engine, SqliteEngine):
        pytest.skip("counts the sqlite engine's worker-thread hops")
    keys = [b"k%03d" % i for i in range(50)]
    await store(engine, {key: key.upper() for key in keys})
    tr = engine.create_transaction()
    await tr.get_read_version()  # the snapshot is taken: what follows is only reads

    hops: list[Any] = []
    real_submit = engine.submit

    def counting_submit(fn: Any, *args: Any) -> Any:
        hops.append(fn)
        return real_submit(fn, *args)

    monkeypatch.setattr(engine, "submit", counting_submit)
    values = await asyncio.gather(*(tr.get(key) for key in keys))
    assert values == [key.upper() for key in keys]  # each its own answer, in order
    # At most a few hops (none, if the worker that took the snapshot was still draining).
    assert len(hops) <= 3, f"{len(hops)} hops for 50 gathered reads"

    hops.clear()
    for key in keys[:5]:
        tr2 = engine.create_transaction()
        assert await tr2.get(key) == key.upper()
        tr2.cancel()
    assert len(hops) == 5  # sequential reads of separate transactions: one hop each


async def test_transactions_starting_together_share_a_snapshot(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like FDB's batched read versions: 48 transactions that ask for their first read in one
    go take one snapshot between them, on a few connections and thread hops, not 48."""
    if not isinstance(engine, SqliteEngine):
        pytest.skip("counts the sqlite engine's connections and worker-thread hops")
    keys = [b"s%03d" % i for i in range(48)]
    await store(engine, {key: key.upper() for key in keys})
    hops: list[Any] = []
    checkouts: list[Any] = []
    real_submit, real_checkout = engine.submit, engine.checkout_reader

    def counting_submit(fn: Any, *args: Any) -> Any:
        hops.append(fn)
        return real_submit(fn, *args)

    def counting_checkout() -> Any:
        reader = real_checkout()
        checkouts.append(reader)
        return reader

    monkeypatch.setattr(engine, "submit", counting_submit)
    monkeypatch.setattr(engine, "checkout_reader", counting_checkout)
    transactions = [engine.create_transaction() for _ in keys]

    async def read_version_and_value(tr: Any, key: bytes) -> tuple[int, bytes | None]:
        value = await tr.get(key)
        return await tr.get_read_version(), value

    results = await asyncio.gather(
        *(read_version_and_value(tr, key) for tr, key in zip(transactions, keys, strict=True))
    )
    assert [value for _, value in results] == [key.upper() for key in keys]
    assert len({version for version, _ in results}) == 1  # one snapshot for all
    assert len(checkouts) == 1
    assert len(hops) <= 3, f"{len(hops)} hops for 48 transactions reading together"
    for tr in transactions:
        tr.cancel()


async def test_a_transaction_never_joins_a_snapshot_taken_before_it_asked(engine: Engine) -> None:
    """Sharing must not cost strict serializability: once a snapshot is taken, a commit that
    finishes afterwards is seen by every transaction that starts after it."""
    await store(engine, {b"k": b"old"})
    early = engine.create_transaction()
    assert await early.get(b"k") == b"old"  # its snapshot is taken and still held
    await store(engine, {b"k": b"new"})
    late = engine.create_transaction()
    assert await late.get(b"k") == b"new"
    assert await late.get_read_version() > await early.get_read_version()
    assert await early.get(b"k") == b"old"  # the early one keeps its own snapshot
    early.cancel()
    late.cancel()


async def test_a_member_leaving_does_not_end_the_shared_snapshot(engine: Engine) -> None:
    """Transactions sharing a snapshot finish independently: one cancelled, one committed and
    one still reading all see their own consistent reads."""
    await store(engine, {b"a": b"1", b"b": b"2"})
    first, second, third = (engine.create_transaction() for _ in range(3))
    await asyncio.gather(first.get(b"a"), second.get(b"a"), third.get(b"a"))
    first.cancel()
    second.set(b"c", b"3")
    await second.commit()
    assert await third.get(b"b") == b"2"
    assert await third.get(b"c") is None  # committed after its read version
    third.cancel()
