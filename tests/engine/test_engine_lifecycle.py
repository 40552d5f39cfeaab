"""Engines open and close cleanly: background threads stop, pending watches fail, the file
stays usable, and a closed engine refuses work with a clear error."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from fdbsync.engine import ErrorCode, FDBError, create_engine

from .committed import expect_error, read, store

ENGINE_THREADS = ("fdbsync-sqlite-commit", "fdbsync-sqlite-watcher", "fdbsync-sqlite")


def engine_threads() -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith(ENGINE_THREADS) and thread.is_alive()
    ]


async def test_close_stops_threads_and_fails_pending_watches(tmp_path: Path) -> None:
    before = set(engine_threads())
    url = f"sqlite:///{tmp_path / 'x.db'}"
    async with create_engine(url) as engine:
        await store(engine, {b"k": b"1"})
        tr = engine.create_transaction()
        watch = tr.watch(b"k")
        await tr.commit()
        assert set(engine_threads()) - before, "the engine runs background threads"
    await expect_error(ErrorCode.OPERATION_CANCELLED, asyncio.wait_for(watch, 5))
    deadline = asyncio.get_running_loop().time() + 5
    while set(engine_threads()) - before:  # executor threads exit once idle
        assert asyncio.get_running_loop().time() < deadline, engine_threads()
        await asyncio.sleep(0.01)

    async with create_engine(url) as reopened:
        assert await read(reopened, b"k") == b"1"


async def test_a_closed_engine_refuses_new_transactions(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(FDBError) as caught:
        engine.create_transaction()
    assert caught.value.code == ErrorCode.CLIENT_INVALID_OPERATION
    async with engine:
        await store(engine, {b"k": b"v"})
    with pytest.raises(FDBError):
        engine.create_transaction()


async def test_a_cancelled_close_still_shuts_down(tmp_path: Path) -> None:
    before = set(engine_threads())
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    await engine.open()
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    await tr.commit()
    closing = asyncio.create_task(engine.close())
    await asyncio.sleep(0)  # let close() begin: it has marked the engine closed
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await expect_error(ErrorCode.OPERATION_CANCELLED, asyncio.wait_for(watch, 5))
    await engine.close()  # finishes (or finds finished) the shutdown
    deadline = asyncio.get_running_loop().time() + 5
    while set(engine_threads()) - before:
        assert asyncio.get_running_loop().time() < deadline, engine_threads()
        await asyncio.sleep(0.01)


def test_open_and_close_from_two_event_loops(tmp_path: Path) -> None:
    """An engine may be opened and closed from successive event loops (as test suites do),
    even when open() and close() race on each."""
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")

    async def cycle(value: bytes) -> bytes | None:
        await engine.open()
        await asyncio.gather(engine.close(), engine.open())
        await store(engine, {b"k": value})
        seen = await read(engine, b"k")
        await engine.close()
        return seen

    assert asyncio.run(cycle(b"first")) == b"first"
    assert asyncio.run(cycle(b"second")) == b"second"


async def test_opening_a_file_that_is_not_a_database_is_an_fdb_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a sqlite database, just some bytes" * 100)
    engine = create_engine(f"sqlite:///{path}")
    with pytest.raises(FDBError, match="not a database"):
        await engine.open()
    assert not engine.is_open
