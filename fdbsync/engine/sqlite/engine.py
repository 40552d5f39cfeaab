"""The embedded engine: FoundationDB's transaction semantics on one SQLite file.

Reads run on worker threads, each transaction holding one SQLite read snapshot (its read
version) for its lifetime; transactions that start together share one (see attempt.py).
Writes go to one committer thread per process, which checks conflicts and commits in
batches. Several processes may share a file: SQLite's write lock orders their commits, and
each process's watcher thread sees the others' changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..base import Engine
from ..errors import ErrorCode, FDBError
from ..limits import Limits
from . import schema
from .attempt import Snapshot
from .committer import CommitRequest, Committer
from .transaction import SqliteTransaction
from .watches import SqliteWatch, Watcher, WatchRegistry

T = TypeVar("T")


class Reader:
    """A pooled SQLite connection that holds one transaction's read snapshot."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def begin(self) -> tuple[int, int]:
        """Pin a snapshot: its read version and the wall-clock microseconds it was taken at."""
        self.conn.execute("BEGIN")
        version = schema.current_version(self.conn)
        # Versions never run behind the clock; if the clock runs behind them (it was set back),
        # the version is the better "now", so the age check cannot fire spuriously.
        return version, max(version, time.time_ns() // 1000)

    def end(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class SqliteEngine(Engine):
    """The `sqlite:///path` engine."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        limits: Limits | None = None,
        watch_poll_interval: float = 0.005,
        read_threads: int = 8,
        url: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self.limits = limits or Limits()
        if self.limits.transaction_time * 1_000_000 > schema.MVCC_WINDOW_US:
            raise ValueError("transaction_time cannot exceed FoundationDB's 5 second window")
        self._poll_interval = watch_poll_interval
        self._read_threads = read_threads
        self._idle: list[Reader] = []
        # Re-entrant: a transaction's finalizer may run (garbage collection) while it is held.
        self._idle_lock = threading.RLock()
        self._joinable: Snapshot | None = None  # the snapshot new attempts join
        self._joinable_lock = threading.Lock()
        self._registry = WatchRegistry(self.limits.max_watches)
        self._executor: ThreadPoolExecutor | None = None
        self._committer: Committer | None = None
        self._watcher: Watcher | None = None
        self._watcher_lock = threading.Lock()
        self._open = False
        self._shutdown: asyncio.Future[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._lifecycle():
            if self._shutdown is not None:  # a close() that was cancelled is still finishing
                await asyncio.shield(self._shutdown)
            if self._open:
                return
            self._executor = ThreadPoolExecutor(
                self._read_threads, thread_name_prefix="fdbsync-sqlite"
            )
            try:
                await self.run(schema.initialize, self.path)
            except BaseException as error:
                self._executor.shutdown(wait=False)
                self._executor = None
                if isinstance(error, sqlite3.Error):  # not a database, unreadable, ...
                    raise schema.as_fdb_error(error, f"opening {self.path}") from error
                raise
            self._registry.reopen()
            self._committer = Committer(self.path, self.limits, self._registry)
            self._committer.start()
            self._open = True

    async def close(self) -> None:
        async with self._lifecycle():
            if self._open:
                self._open = False
                # Shielded: a cancelled close() still stops the threads and fails the watches.
                self._shutdown = asyncio.ensure_future(self._stop())
            if self._shutdown is not None:
                await asyncio.shield(self._shutdown)
                self._shutdown = None

    async def _stop(self) -> None:
        committer, executor = self._committer, self._executor
        assert committer is not None and executor is not None
        await self.run(committer.stop)
        await self.run(self._stop_watcher)
        with self._idle_lock:
            idle, self._idle = self._idle, []
        await self.run(_close_all, idle)
        self._committer = None
        self._executor = None
        executor.shutdown(wait=False)

    @property
    def is_open(self) -> bool:
        return self._open

    def create_transaction(self) -> SqliteTransaction:
        self.check_open()
        return SqliteTransaction(self)

    def check_open(self) -> None:
        if not self._open:
            raise FDBError(ErrorCode.CLIENT_INVALID_OPERATION, f"engine {self.url} is not open")

    # -- services for transactions ---------------------------------------------------------
    def run(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        """Run blocking SQLite work on a worker thread, off the event loop."""
        return asyncio.wrap_future(self.submit(fn, *args))

    def submit(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        """Like `run`, but the caller keeps the thread's own future (see _with_reader)."""
        if self._executor is None:
            raise FDBError(ErrorCode.CLIENT_INVALID_OPERATION, f"engine {self.url} is not open")
        return self._executor.submit(fn, *args)

    def join_snapshot(self) -> Snapshot:
        """The snapshot a transaction's first read joins: the one not yet taken, or a new one."""
        with self._joinable_lock:
            snapshot = self._joinable
            if snapshot is None or not snapshot.join():
                snapshot = self._joinable = Snapshot(self)
                snapshot.join()
            return snapshot

    def checkout_reader(self) -> Reader:
        """A reader connection (worker threads only: opening one touches the disk)."""
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return Reader(schema.connect(self.path))

    def release_reader(self, reader: Reader) -> None:
        """End the reader's snapshot and return it to the pool.

        Ending a read transaction in WAL mode only drops a read mark in shared memory (no
        disk wait), so it runs inline, on whichever thread lets go of the transaction.
        Closing a connection may checkpoint, so that never happens on an event loop.
        """
        try:
            reader.end()
        except sqlite3.Error:
            _close_off_loop(reader.conn)
            return
        with self._idle_lock:
            if self._open:
                self._idle.append(reader)
                return
        _close_off_loop(reader.conn)

    def submit_commit(self, request: CommitRequest) -> None:
        self.check_open()
        assert self._committer is not None
        self._committer.submit(request)

    def create_watch(self, key: bytes) -> SqliteWatch:
        return self._registry.create(key)

    def ensure_watcher(self) -> None:
        """Start the cross-process watcher before the first watch is armed (worker thread)."""
        with self._watcher_lock:
            self.check_open()  # close() takes the watcher under this lock: never start another
            watcher = self._watcher
            starting = watcher is None or not watcher.alive
            if starting:
                watcher = self._watcher = Watcher(self.path, self._registry, self._poll_interval)
                # A watcher that died failed the registry; this one will serve it (if it fails
                # to start, it fails the registry again).
                self._registry.revive()
        assert watcher is not None
        if starting:
            watcher.start()  # if close() stopped it meanwhile, its thread exits at once
        watcher.wait_ready()
        if watcher.error is not None:
            raise FDBError(
                ErrorCode.OPERATION_FAILED, f"the watcher could not start: {watcher.error}"
            )

    def _stop_watcher(self) -> None:
        """Fail every watch for good and stop the watcher (worker thread: it may wait for a
        watcher being started)."""
        with self._watcher_lock:
            self._registry.close(FDBError(ErrorCode.OPERATION_CANCELLED, "engine closed"))
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def arm_read_only(self, armed: list[tuple[SqliteWatch, bytes | None]]) -> None:
        """Arm a read-only transaction's watches (worker thread): register them, then verify
        them against the newest state, read outside any snapshot."""
        self.ensure_watcher()
        reader = self.checkout_reader()
        try:
            self._registry.register_and_verify(reader.conn, armed)
        finally:
            self.release_reader(reader)

    @property
    def pending_watches(self) -> int:
        return self._registry.pending


def _close_all(readers: list[Reader]) -> None:
    for reader in readers:
        reader.conn.close()


def _close_off_loop(conn: sqlite3.Connection) -> None:
    """Close `conn` here, or on a short-lived thread if this thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        conn.close()
        return
    threading.Thread(target=conn.close, name="fdbsync-sqlite-close", daemon=True).start()
