"""How the sqlite engine fails: SQLite errors become FDB errors, nothing hangs, nothing is lost.

Also the limits' accounting as FoundationDB does it (transaction size counts write conflict
ranges; a versionstamped key makes only its own landing range unreadable).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fdbsync.engine import (
    Engine,
    ErrorCode,
    Transaction,
    Versionstamp,
    create_engine,
    pack_with_versionstamp,
)
from fdbsync.engine.sqlite import schema
from fdbsync.engine.sqlite import transaction as sqlite_transaction

from .committed import expect_error, read, store

STEP_S = 5.0


def failing_in_thread(monkeypatch: pytest.MonkeyPatch, thread_name: str) -> Callable[[], None]:
    """Make schema.connect fail on the named engine thread; returns a function that heals it."""
    real = schema.connect
    broken = threading.Event()
    broken.set()

    def connect(path: Path) -> sqlite3.Connection:
        if broken.is_set() and threading.current_thread().name == thread_name:
            raise sqlite3.OperationalError("unable to open database file")
        return real(path)

    monkeypatch.setattr(schema, "connect", connect)
    return broken.clear


async def test_commits_fail_instead_of_hanging_when_the_committer_cannot_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_in_thread(monkeypatch, "fdbsync-sqlite-commit")
    async with create_engine(f"sqlite:///{tmp_path / 'x.db'}") as engine:
        tr = engine.create_transaction()
        tr.set(b"k", b"v")
        error = await expect_error(
            ErrorCode.OPERATION_FAILED, asyncio.wait_for(tr.commit(), STEP_S)
        )
        assert "unable to open" in str(error)


async def test_watches_fail_and_the_watcher_restarts_when_it_could_not_connect(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    heal = failing_in_thread(monkeypatch, "fdbsync-sqlite-watcher")
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    tr.set(b"other", b"1")
    await expect_error(ErrorCode.OPERATION_FAILED, asyncio.wait_for(tr.commit(), STEP_S))
    await expect_error(ErrorCode.OPERATION_FAILED, asyncio.wait_for(watch, STEP_S))

    heal()
    tr = engine.create_transaction()
    watch = tr.watch(b"k")
    await asyncio.wait_for(tr.commit(), STEP_S)
    await store(engine, {b"k": b"changed"})
    await asyncio.wait_for(watch, STEP_S)


async def test_a_locked_database_on_the_read_path_is_a_retryable_fdb_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store(engine, {b"k": b"v"})
    real = sqlite_transaction._fetch_value
    failures = [sqlite3.OperationalError("database is locked")]

    def fetch(conn: sqlite3.Connection, key: bytes) -> bytes | None:
        if failures:
            raise failures.pop()
        return real(conn, key)

    monkeypatch.setattr(sqlite_transaction, "_fetch_value", fetch)
    tr = engine.create_transaction()
    error = await expect_error(ErrorCode.PROCESS_BEHIND, tr.get(b"k"))
    assert error.retryable

    failures.append(sqlite3.OperationalError("database is locked"))
    attempts: list[int] = []

    async def get(tr: Transaction) -> bytes | None:
        attempts.append(1)
        return await tr.get(b"k")

    assert await engine.transact(get) == b"v"
    assert len(attempts) == 2


async def test_snapshots_older_than_pruned_bookkeeping_cannot_commit(
    engine: Engine, engine_url: str
) -> None:
    """Whatever the clocks did, a read version older than the pruned conflict bookkeeping
    fails with 1007: the engine can no longer prove it has no conflict."""
    await store(engine, {b"k": b"1"})
    tr = engine.create_transaction()
    version = await tr.get_read_version()
    await tr.get(b"k")
    tr.set(b"k", b"2")
    path = engine_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'pruned'", (version + 1,))
    finally:
        conn.close()
    await expect_error(ErrorCode.TRANSACTION_TOO_OLD, tr.commit())
    assert await read(engine, b"k") == b"1"


async def test_transaction_size_counts_write_conflict_ranges(engine: Engine) -> None:
    """600 keys of 9,000 bytes are 5.4 MB of mutations, but FDB also counts each key's write
    conflict range: over 10 MB in all, so the commit fails with 2101 and writes nothing."""
    tr = engine.create_transaction()
    for index in range(600):
        tr.set(b"%05d" % index + b"k" * 8995, b"")
    await expect_error(ErrorCode.TRANSACTION_TOO_LARGE, tr.commit())
    assert await read(engine, b"00000" + b"k" * 8995) is None


async def test_a_versionstamped_key_leaves_other_keys_readable(engine: Engine) -> None:
    """Only where the new key can land is unreadable before commit (FDB's 1036)."""
    await store(engine, {b"users/1": b"ada"})
    tr = engine.create_transaction()
    tr.set_versionstamped_key(pack_with_versionstamp((Versionstamp(), "log")), b"entry")
    assert await tr.get(b"users/1") == b"ada"
    rows = await tr.get_range(b"users/", b"users0").to_list()
    assert [kv.key for kv in rows] == [b"users/1"]
    await expect_error(ErrorCode.ACCESSED_UNREADABLE, tr.get_range(b"\x33", b"\x34").to_list())
