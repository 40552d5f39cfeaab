"""Group commit for the sqlite engine: one thread turns queued transactions into SQLite commits.

Transactions that arrive while a commit is in progress are committed together in the next
SQLite transaction (one fsync for all), the way FoundationDB's commit proxies batch. Each is
checked for conflicts in arrival order, exactly as FDB's resolver does: a transaction fails
with 1020 when a key or range it read was written after its read version, by another
process, by an earlier commit, or by an earlier transaction of the same batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import apply_atomic
from ..errors import ErrorCode, FDBError
from ..limits import Limits
from . import schema
from .watches import SqliteWatch, WatchRegistry, read_values, settle_threadsafe
from .writes import Mutation, Op

#: A read conflict range [begin, end) and how many stored rows the transaction read in it.
ReadRange = tuple[bytes, bytes, int]

#: Above this many rows read, a range is checked through the version index (only the rows
#: written since the read version) rather than by scanning every row in the range.
LARGE_RANGE_ROWS = 512

#: A watch's baseline when it is the value the transaction itself leaves behind.
AFTER_COMMIT = object()


@dataclass(slots=True)
class CommitRequest:
    read_version: int | None
    #: Wall-clock microseconds when the read version was taken: the MVCC window's start.
    read_time: int
    reads: list[ReadRange]
    mutations: list[Mutation]
    write_conflicts: list[tuple[bytes, bytes]]
    watches: list[tuple[SqliteWatch, bytes | object | None]]
    future: asyncio.Future[tuple[int, bytes]]
    #: Filled by the committer: the commit version and versionstamp, or the error.
    outcome: tuple[int, bytes] | BaseException | None = None
    baselines: list[tuple[SqliteWatch, bytes | None]] = field(default_factory=list)


@dataclass(slots=True)
class _BatchState:
    version: int
    changed: dict[bytes, bytes | None] = field(default_factory=dict)
    cleared: list[tuple[bytes, bytes]] = field(default_factory=list)
    newest_tombstone: int = 0
    newest_range: int = 0
    pruned: int = 0


def substitute_versionstamp(data: bytes, stamp: bytes) -> bytes:
    """Replace the placeholder at the offset in `data`'s last 4 bytes (FDB API >= 520)."""
    offset = int.from_bytes(data[-4:], "little")
    body = data[:-4]
    return body[:offset] + stamp + body[offset + 10 :]


class Committer:
    """The engine's single writer thread."""

    BATCH_LIMIT = 1000
    PRUNE_EVERY_S = 1.0

    def __init__(self, path: Path, limits: Limits, registry: WatchRegistry) -> None:
        self._path = path
        self._limits = limits
        self._registry = registry
        self._queue: queue.SimpleQueue[CommitRequest | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fdbsync-sqlite-commit", daemon=True)
        self._last_prune = 0.0
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: CommitRequest) -> None:
        self._queue.put(request)

    def stop(self) -> None:
        """Finish queued commits, then stop (blocking: call from a worker thread)."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            running = True
            while running:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self.BATCH_LIMIT:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        running = False
                        break
                    batch.append(item)
                try:
                    self._commit(batch)
                except BaseException as error:  # a bug: never die with commits waiting on us
                    unsettled = [request for request in batch if request.outcome is None]
                    self._fail(unsettled, FDBError(ErrorCode.OPERATION_FAILED, repr(error)))
        finally:
            if self._conn is not None:
                self._conn.close()
            self._fail_leftovers()

    def _connection(self, batch: list[CommitRequest]) -> sqlite3.Connection | None:
        """The committer's connection, opened again if a failure lost it."""
        if self._conn is None:
            try:
                self._conn = schema.connect(self._path)
            except sqlite3.Error as error:
                self._fail(batch, schema.as_fdb_error(error, "opening the committer's connection"))
        return self._conn

    def _abort(self) -> None:
        """Roll back what is left of a failed batch. SQLite may have rolled back already; a
        connection still stuck in its transaction (and the write lock) is dropped."""
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._conn = None

    def _fail_leftovers(self) -> None:
        """Fail commits queued after the engine began closing."""
        left: list[CommitRequest] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                left.append(item)
        self._fail(left, FDBError(ErrorCode.CLIENT_INVALID_OPERATION, "the engine is closed"))

    # -- one batch -------------------------------------------------------------------------
    def _commit(self, batch: list[CommitRequest]) -> None:
        conn = self._connection(batch)
        if conn is None:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            self._abort()
            self._fail(batch, schema.as_fdb_error(error, "taking the write lock"))
            return
        try:
            previous = schema.current_version(conn)
            state = _BatchState(version=max(previous + 1, time.time_ns() // 1000))
            state.newest_tombstone = _newest(conn, "tombstones")
            state.newest_range = _newest(conn, "write_ranges")
            (state.pruned,) = conn.execute(
                "SELECT value FROM meta WHERE name = 'pruned'"
            ).fetchone()
            applied = 0
            for index, request in enumerate(batch):
                request.outcome = self._check(conn, state, request)
                if request.outcome is None:
                    stamp = state.version.to_bytes(8, "big") + index.to_bytes(2, "big")
                    self._apply(conn, state, request, stamp)
                    request.outcome = (state.version, stamp)
                    applied += 1
            if applied:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'version'", (state.version,))
                self._maybe_prune(conn, state.version)
        except BaseException as error:
            self._abort()
            _mark(_not_rejected(batch), _commit_error(error, "writing the batch"))
            self._finish(batch)
            return
        try:
            conn.execute("COMMIT")
        except BaseException as error:
            # A failed COMMIT (a failed fsync, say) may still have reached the log.
            self._abort()
            _mark(_not_rejected(batch), FDBError(ErrorCode.COMMIT_UNKNOWN_RESULT, repr(error)))
            self._finish(batch)
            return
        self._finish(batch)
        # Committed and reported. Watches are armed before the next batch runs, so a commit
        # that returns has armed its watches for every later change.
        armed = [
            pair
            for request in batch
            if isinstance(request.outcome, tuple)
            for pair in request.baselines
        ]
        try:
            self._registry.fire(state.changed, state.cleared)
            self._registry.register_and_verify(conn, armed)
        except BaseException as error:
            failure = FDBError(ErrorCode.OPERATION_FAILED, f"arming watches failed: {error!r}")
            settle_threadsafe((watch.future, failure) for watch, _ in armed)

    def _check(
        self, conn: sqlite3.Connection, state: _BatchState, request: CommitRequest
    ) -> BaseException | None:
        rv = request.read_version
        if rv is None or not request.reads:
            return None
        # Versions follow the wall clock at commit, so this is the transaction's age.
        if state.version - request.read_time > schema.MVCC_WINDOW_US or rv < state.pruned:
            return FDBError(ErrorCode.TRANSACTION_TOO_OLD)
        recent: int | None = None  # rows written anywhere since rv, counted up to a bound
        for begin, end, rows in request.reads:
            by_version = False
            if rows > LARGE_RANGE_ROWS:
                # The version index pays off only when fewer rows were written since rv
                # than this range holds.
                if recent is None or recent >= rows:
                    (recent,) = conn.execute(_COUNT_SINCE, (rv, rows)).fetchone()
                by_version = recent < rows
            if conn.execute(_WRITTEN_SINCE[by_version], (begin, end, rv)).fetchone():
                return FDBError(ErrorCode.NOT_COMMITTED)
            if (
                state.newest_tombstone > rv
                and conn.execute(
                    "SELECT 1 FROM tombstones WHERE key >= ? AND key < ? AND version > ? LIMIT 1",
                    (begin, end, rv),
                ).fetchone()
            ):
                return FDBError(ErrorCode.NOT_COMMITTED)
            if (
                state.newest_range > rv
                and conn.execute(
                    "SELECT 1 FROM write_ranges WHERE version > ? AND begin_key < ? AND end_key > ?"
                    " LIMIT 1",
                    (rv, end, begin),
                ).fetchone()
            ):
                return FDBError(ErrorCode.NOT_COMMITTED)
        return None

    def _apply(
        self, conn: sqlite3.Connection, state: _BatchState, request: CommitRequest, stamp: bytes
    ) -> None:
        version = state.version
        for mutation in request.mutations:
            op, key = mutation.op, mutation.key
            if op is Op.SET:
                self._set(conn, state, key, mutation.param)
            elif op is Op.CLEAR:
                self._clear(conn, state, key)
            elif op is Op.ATOMIC:
                assert mutation.atomic is not None
                row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
                result = apply_atomic(
                    mutation.atomic,
                    None if row is None else row[0],
                    mutation.param,
                    self._limits.value_size,
                )
                if result is None:
                    self._clear(conn, state, key)
                else:
                    self._set(conn, state, key, result)
            elif op is Op.CLEAR_RANGE:
                self._clear_range(conn, state, key, mutation.param)
            elif op is Op.VERSIONSTAMPED_KEY:
                self._set(conn, state, substitute_versionstamp(key, stamp), mutation.param)
            elif op is Op.VERSIONSTAMPED_VALUE:
                self._set(conn, state, key, substitute_versionstamp(mutation.param, stamp))
        for begin, end in request.write_conflicts:
            conn.execute("INSERT INTO write_ranges VALUES (?, ?, ?)", (begin, end, version))
            state.newest_range = version
        # Baselines are the values this transaction leaves; later ones in the batch may change
        # them, which the verification after COMMIT notices.
        unresolved = {watch.key for watch, expected in request.watches if expected is AFTER_COMMIT}
        left = read_values(conn, unresolved) if unresolved else {}
        for watch, expected in request.watches:
            baseline = left[watch.key] if expected is AFTER_COMMIT else expected
            assert baseline is None or isinstance(baseline, bytes)
            request.baselines.append((watch, baseline))

    def _set(self, conn: sqlite3.Connection, state: _BatchState, key: bytes, value: bytes) -> None:
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, value, state.version))
        state.changed[key] = value

    def _clear(self, conn: sqlite3.Connection, state: _BatchState, key: bytes) -> None:
        conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        conn.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (key, state.version))
        state.newest_tombstone = state.version
        state.changed[key] = None

    def _clear_range(
        self, conn: sqlite3.Connection, state: _BatchState, begin: bytes, end: bytes
    ) -> None:
        conn.execute("DELETE FROM kv WHERE key >= ? AND key < ?", (begin, end))
        conn.execute("INSERT INTO write_ranges VALUES (?, ?, ?)", (begin, end, state.version))
        state.newest_range = state.version
        state.cleared.append((begin, end))
        for key in [k for k in state.changed if begin <= k < end]:
            state.changed[key] = None

    def _maybe_prune(self, conn: sqlite3.Connection, version: int) -> None:
        now = time.monotonic()
        if now - self._last_prune < self.PRUNE_EVERY_S:
            return
        self._last_prune = now
        horizon = version - schema.PRUNE_AFTER_US
        conn.execute("DELETE FROM tombstones WHERE version < ?", (horizon,))
        conn.execute("DELETE FROM write_ranges WHERE version < ?", (horizon,))
        conn.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'pruned'", (horizon,))

    # -- reporting -------------------------------------------------------------------------
    def _fail(self, batch: list[CommitRequest], error: BaseException) -> None:
        _mark(batch, error)
        self._finish(batch)

    def _finish(self, batch: list[CommitRequest]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[CommitRequest]] = {}
        for request in batch:
            by_loop.setdefault(request.future.get_loop(), []).append(request)
        for loop, requests in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody awaiting
                loop.call_soon_threadsafe(_deliver, requests)


def _deliver(requests: list[CommitRequest]) -> None:
    for request in requests:
        if request.future.done():
            continue
        outcome = request.outcome
        if isinstance(outcome, tuple):
            request.future.set_result(outcome)
        else:
            assert outcome is not None
            request.future.set_exception(outcome)


_COUNT_SINCE = (
    "SELECT count(*) FROM (SELECT 1 FROM kv INDEXED BY kv_by_version WHERE version > ? LIMIT ?)"
)
_WRITTEN_SINCE = {
    False: "SELECT 1 FROM kv WHERE key >= ? AND key < ? AND version > ? LIMIT 1",
    True: "SELECT 1 FROM kv INDEXED BY kv_by_version WHERE key >= ? AND key < ? AND version > ?"
    " LIMIT 1",
}


def _mark(requests: list[CommitRequest], error: BaseException) -> None:
    for request in requests:
        request.outcome = error


def _not_rejected(batch: list[CommitRequest]) -> list[CommitRequest]:
    """The requests of a failed batch that were not already turned down on their own."""
    return [r for r in batch if r.outcome is None or isinstance(r.outcome, tuple)]


def _commit_error(error: BaseException, doing: str) -> FDBError:
    if isinstance(error, sqlite3.Error):
        return schema.as_fdb_error(error, doing)
    return FDBError(ErrorCode.OPERATION_FAILED, f"{doing}: {error!r}")


def _newest(conn: sqlite3.Connection, table: str) -> int:
    (newest,) = conn.execute(f"SELECT max(version) FROM {table}").fetchone()
    return int(newest or 0)
