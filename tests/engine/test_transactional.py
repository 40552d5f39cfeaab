"""`@transactional` runs a function in its own retried transaction, or joins the caller's."""

from __future__ import annotations

import asyncio

from fdbsync.engine import Engine, Transaction, transactional

COUNTER = b"counter"


@transactional
async def bump(tr: Transaction, by: int) -> int:
    value = int.from_bytes(await tr.get(COUNTER) or b"", "little") + by
    tr.set(COUNTER, value.to_bytes(8, "little"))
    return value


async def stored(engine: Engine) -> int:
    tr = engine.create_transaction()
    raw = await tr.get(COUNTER)
    tr.cancel()
    return int.from_bytes(raw or b"", "little")


async def test_with_an_engine_it_commits_and_retries(engine: Engine) -> None:
    results = await asyncio.gather(*(bump(engine, 1) for _ in range(20)))
    assert sorted(results) == list(range(1, 21))  # serialized by retries: each saw the last
    assert await stored(engine) == 20


async def test_with_a_transaction_it_joins_and_leaves_the_commit_to_the_caller(
    engine: Engine,
) -> None:
    tr = engine.create_transaction()
    assert await bump(tr, 5) == 5
    assert await bump(tr, 5) == 10  # sees its own earlier write
    assert await stored(engine) == 0  # nothing committed yet
    await tr.commit()
    assert await stored(engine) == 10
