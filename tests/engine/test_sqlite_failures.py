"""How the sqlite engine fails: SQLite errors become FDB errors, nothing hangs, nothing is lost.

Also the limits' accounting as FoundationDB does it (transaction size counts write conflict
ranges; a versionstamped key makes only its own landing range unreadable).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from fdbsync.engine import (
    Engine,
    ErrorCode,
    FDBError,
    Transaction,
    Versionstamp,
    create_engine,
    pack_with_versionstamp,
)
from fdbsync.engine.sqlite import schema
from fdbsync.engine.sqlite import transaction as sqlite_transaction
from fdbsync.engine.sqlite.watches import WatchRegistry

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


def failing_reads(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Point reads raise the errors put in the returned list, one read each, then read."""
    real = sqlite_transaction._fetch_value
    failures: list[BaseException] = []

    def fetch(conn: sqlite3.Connection, key: bytes) -> bytes | None:
        if failures:
            raise failures.pop()
        return real(conn, key)

    monkeypatch.setattr(sqlite_transaction, "_fetch_value", fetch)
    return failures


async def test_a_locked_database_on_the_read_path_is_a_retryable_fdb_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store(engine, {b"k": b"v"})
    failures = failing_reads(monkeypatch)
    failures.append(sqlite3.OperationalError("database is locked"))
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


async def test_own_clear_range_keeps_empty_values(engine: Engine) -> None:
    """A range answered by the transaction's own clear still returns keys it set to b''."""
    await store(engine, {b"b": b"old"})
    tr = engine.create_transaction()
    tr.clear_range(b"a", b"z")
    tr.set(b"b", b"")
    tr.set(b"c", b"x")
    rows = await tr.get_range(b"a", b"z").to_list()
    assert [(kv.key, kv.value) for kv in rows] == [(b"b", b""), (b"c", b"x")]


class _FailingCommit:
    """A connection whose next COMMIT and ROLLBACK fail, as after a failed fsync."""

    def __init__(self, conn: sqlite3.Connection, armed: threading.Event) -> None:
        self._conn = conn
        self._armed = armed

    def execute(self, sql: str, *args: Any) -> Any:
        if self._armed.is_set() and sql in ("COMMIT", "ROLLBACK"):
            if sql == "ROLLBACK":
                self._armed.clear()
            raise sqlite3.OperationalError(f"disk I/O error during {sql}")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_a_failed_commit_is_unknown_and_the_committer_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = schema.connect
    armed = threading.Event()

    def connect(path: Path) -> Any:
        conn = real(path)
        if threading.current_thread().name == "fdbsync-sqlite-commit":
            return _FailingCommit(conn, armed)
        return conn

    monkeypatch.setattr(schema, "connect", connect)
    async with create_engine(f"sqlite:///{tmp_path / 'x.db'}") as engine:
        await store(engine, {b"k": b"1"})
        armed.set()
        tr = engine.create_transaction()
        tr.set(b"k", b"2")
        error = await expect_error(
            ErrorCode.COMMIT_UNKNOWN_RESULT, asyncio.wait_for(tr.commit(), STEP_S)
        )
        assert error.retryable and error.maybe_committed
        # The stuck connection (still holding the write lock) was dropped: commits go on.
        await asyncio.wait_for(store(engine, {b"k": b"3"}), STEP_S)
        assert await read(engine, b"k") == b"3"


async def test_open_and_close_racing_leave_a_consistent_engine(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    await engine.open()
    await store(engine, {b"k": b"v"})
    await asyncio.gather(engine.close(), engine.open())
    assert engine.is_open  # open() ran after close() finished
    assert await read(engine, b"k") == b"v"
    await asyncio.gather(engine.open(), engine.close())
    with pytest.raises(FDBError):
        engine.create_transaction()


class _Stop(BaseException):
    """Not an Exception: the kind of error that used to stop a snapshot's worker for good."""


@pytest.mark.parametrize(
    ("raised", "seen"),
    [(_Stop(), _Stop), (StopIteration(), RuntimeError)],
    ids=["base_exception", "stop_iteration"],
)
async def test_any_error_in_a_read_reaches_the_reader_and_reads_go_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, raised: BaseException, seen: type
) -> None:
    """Whatever a read raises reaches its caller (futures refuse StopIteration, so it comes
    as a RuntimeError), and the transaction's next read still works."""
    await store(engine, {b"k": b"v"})
    failing_reads(monkeypatch).append(raised)
    tr = engine.create_transaction()
    await tr.get_read_version()
    with pytest.raises(seen):
        await asyncio.wait_for(tr.get(b"k"), STEP_S)
    assert await asyncio.wait_for(tr.get(b"k"), STEP_S) == b"v"


def arm(registry: WatchRegistry) -> Awaitable[None]:
    """A watch on b"k" armed on `registry` (verified against an empty store)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB, version INTEGER)")
        watch = registry.create(b"k")
        registry.register_and_verify(conn, [(watch, None)])
    finally:
        conn.close()
    return watch


async def arming_fails_with(registry: WatchRegistry, error: BaseException) -> None:
    with pytest.raises(FDBError) as caught:
        await asyncio.wait_for(arm(registry), STEP_S)
    assert caught.value is error


async def arming_works(registry: WatchRegistry) -> None:
    watch = arm(registry)
    registry.fire({b"k": b"new"})
    await asyncio.wait_for(watch, STEP_S)


async def test_watches_armed_after_the_watcher_failed_fail_too() -> None:
    """Once the watcher died (fail_all), a watch armed late fails with the same error instead
    of waiting for a watcher that is gone; a new watcher (revive) serves watches again."""
    registry = WatchRegistry(max_watches=10)
    gone = FDBError(ErrorCode.OPERATION_FAILED, "the watcher stopped")
    registry.fail_all(gone)
    await arming_fails_with(registry, gone)
    registry.revive()
    await arming_works(registry)


async def test_a_closed_registry_stays_closed_until_reopened() -> None:
    """revive() (a new watcher) cannot undo close(); only reopen() does."""
    registry = WatchRegistry(max_watches=10)
    closed = FDBError(ErrorCode.OPERATION_CANCELLED, "engine closed")
    registry.close(closed)
    registry.revive()
    await arming_fails_with(registry, closed)
    registry.reopen()
    await arming_works(registry)
