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
