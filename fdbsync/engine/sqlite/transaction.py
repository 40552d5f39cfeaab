"""The sqlite engine's transaction: one read snapshot, buffered writes, commit via the committer."""

from __future__ import annotations

import asyncio
import functools
import random
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from ..atomic import AtomicOp
from ..base import KeyValue, RangeResult, ReadView, SnapshotView, Transaction, Watch
from ..checks import (
    SYSTEM_PREFIX,
    check_key,
    check_range,
    check_readable_key,
    check_selector,
    check_value,
)
from ..errors import ErrorCode, FDBError
from ..keys import key_after
from ..selectors import KeyOrSelector, KeySelector, as_selector
from .attempt import Attempt
from .committer import AFTER_COMMIT, CommitRequest, ReadRange
from .watches import SqliteWatch
from .writes import Mutation, Op, Pending, WriteBuffer

if TYPE_CHECKING:
    from .engine import SqliteEngine

T = TypeVar("T")

#: Keys from 0xff on are FoundationDB's system keyspace, closed to applications.
FIRST_PAGE = 256
LARGEST_PAGE = 4096
INITIAL_BACKOFF_S = 0.01
MAX_BACKOFF_S = 1.0


class _State(Enum):
    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _fetch_value(conn: sqlite3.Connection, key: bytes) -> bytes | None:
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else bytes(row[0])


def _fetch_values(conn: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start : start + _KEYS_PER_SELECT]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", chunk)
        found.update((bytes(key), bytes(value)) for key, value in rows)
    return found


_KEYS_PER_SELECT = 500  # well under SQLite's limit on bound parameters


def _fetch_page(
    conn: sqlite3.Connection, begin: bytes, end: bytes, reverse: bool, limit: int
) -> list[tuple[bytes, bytes]]:
    order = "DESC" if reverse else "ASC"
    return conn.execute(
        f"SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key {order} LIMIT ?",
        (begin, end, limit),
    ).fetchall()


class _ReadRange:
    """A read conflict range, and how many stored rows were read in it (a size hint)."""

    __slots__ = ("begin", "end", "rows")

    def __init__(self, begin: bytes, end: bytes, rows: int = 0) -> None:
        self.begin, self.end, self.rows = begin, end, rows


def _coalesce(ranges: list[_ReadRange]) -> list[ReadRange]:
    merged: list[ReadRange] = []
    for begin, end, rows in sorted((r.begin, r.end, r.rows) for r in ranges if r.begin < r.end):
        if merged and begin <= merged[-1][1]:
            low, high, seen = merged[-1]
            merged[-1] = (low, max(high, end), seen + rows)
        else:
            merged.append((begin, end, rows))
    return merged


class _Range(RangeResult):
    def __init__(
        self,
        tr: SqliteTransaction,
        begin: KeyOrSelector,
        end: KeyOrSelector,
        limit: int,
        reverse: bool,
        snapshot: bool,
    ) -> None:
        if limit < 0:
            raise FDBError(ErrorCode.RANGE_LIMITS_INVALID, f"limit {limit}")
        self._tr, self._begin, self._end = tr, as_selector(begin), as_selector(end)
        self._limit, self._reverse, self._snapshot = limit, reverse, snapshot

    async def _pages(self) -> AsyncIterator[list[KeyValue]]:
        tr = self._tr
        begin = await tr._bound(self._begin, self._snapshot)
        end = await tr._bound(self._end, self._snapshot)
        async for page in tr._pages(begin, end, self._limit, self._reverse, self._snapshot):
            yield page

    async def __aiter__(self) -> AsyncIterator[KeyValue]:
        async for page in self._pages():
            for kv in page:
                yield kv

    async def to_list(self) -> list[KeyValue]:
        return [kv async for page in self._pages() for kv in page]


class SqliteTransaction(Transaction):
    def __init__(self, engine: SqliteEngine) -> None:
        self._engine = engine
        self._limits = engine.limits
        self._retry_limit: int | None = None
        self._timeout: float | None = None
        self._retries = 0
        self._backoff = INITIAL_BACKOFF_S
        self._snapshot = SnapshotView(self)
        self._clear_state()

    def _clear_state(self) -> None:
        self._created = time.monotonic()
        self._state = _State.OPEN
        self._attempt = Attempt(self._engine)
        # A transaction dropped unfinished still returns its snapshot and fails its watches.
        self._finalizer = weakref.finalize(self, self._attempt.abandon)
        self._writes = WriteBuffer(self._limits.value_size)
        self._reads: list[_ReadRange] = []
        self._write_conflicts: list[tuple[bytes, bytes]] = []
        self._cache: dict[bytes, bytes | None] = {}
        self._stamp_value: bytes | None = None
        self._committed_version = -1
        self._error: FDBError | None = None

    def _new_attempt(self, why: str | None) -> None:
        """Discard the current attempt (failing what waits on it) before a fresh one."""
        self._finalizer.detach()
        if self._state is _State.COMMITTED:
            self._attempt.release()
        else:
            self._attempt.abandon(FDBError(ErrorCode.TRANSACTION_CANCELLED, why))

    @property
    def snapshot(self) -> ReadView:
        return self._snapshot

    # -- checks ----------------------------------------------------------------------------
    def _check_usable(self) -> None:
        state = self._state
        if state is not _State.OPEN:
            if state is _State.CANCELLED:
                raise FDBError(ErrorCode.TRANSACTION_CANCELLED)
            if state is _State.COMMITTING:
                raise FDBError(ErrorCode.USED_DURING_COMMIT)
            raise FDBError(
                ErrorCode.CLIENT_INVALID_OPERATION, f"transaction is {state.value}; reset() it"
            )
        now = time.monotonic()
        if self._timeout is not None and now - self._created > self._timeout:
            raise FDBError(ErrorCode.TRANSACTION_TIMED_OUT, f"after {self._timeout} s")
        attempt = self._attempt
        if (
            attempt.read_version is not None
            and now - attempt.read_started > self._limits.transaction_time
        ):
            attempt.release()  # its snapshot is useless now; let SQLite checkpoint past it
            raise FDBError(
                ErrorCode.TRANSACTION_TOO_OLD, f"older than {self._limits.transaction_time} s"
            )

    # -- the read snapshot -----------------------------------------------------------------
    async def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on this attempt's snapshot, taking the snapshot on first use."""
        self._check_usable()
        attempt = self._attempt
        result = await attempt.run(fn)
        if attempt is not self._attempt or self._state is _State.CANCELLED:
            raise FDBError(ErrorCode.TRANSACTION_CANCELLED, "the transaction was reset")
        return result

    async def get_read_version(self) -> int:
        if self._attempt.read_version is None:
            await self._with_reader(lambda conn: None)
        version = self._attempt.read_version
        assert version is not None
        return version

    # -- reads -----------------------------------------------------------------------------
    async def get(self, key: bytes) -> bytes | None:
        return await self._get(key, snapshot=False)

    async def _get(self, key: bytes, snapshot: bool) -> bytes | None:
        self._check_usable()
        check_readable_key(key)
        if len(key) > self._limits.key_size:
            return None  # no stored key is that long; FDB answers the same way
        if not self._writes.needs_store(key):
            return self._writes.resolve(key, None)
        if not snapshot:  # before the read, so a commit racing with it still sees it
            self._reads.append(_ReadRange(key, key_after(key), 1))
        if key in self._cache:
            stored = self._cache[key]
        else:
            stored = await self._with_reader(lambda conn: _fetch_value(conn, key))
            self._cache[key] = stored
        return self._writes.resolve(key, stored)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return await self._get_many(keys, snapshot=False)

    async def _get_many(self, keys: Sequence[bytes], snapshot: bool) -> list[bytes | None]:
        """Like `_get` for each key, with the stored values fetched in one piece of work."""
        self._check_usable()
        wanted: list[bytes] = []
        for key in keys:
            check_readable_key(key)
            if len(key) > self._limits.key_size or not self._writes.needs_store(key):
                continue
            if not snapshot:
                self._reads.append(_ReadRange(key, key_after(key), 1))
            if key not in self._cache:
                wanted.append(key)
        if wanted:
            unique = list(dict.fromkeys(wanted))
            found = await self._with_reader(lambda conn: _fetch_values(conn, unique))
            for key in unique:
                self._cache[key] = found.get(key)
        return [
            None
            if len(key) > self._limits.key_size
            else self._writes.resolve(key, self._cache.get(key))
            for key in keys
        ]

    async def get_key(self, selector: KeySelector) -> bytes:
        return await self._get_key(selector, snapshot=False)

    def get_range(
        self, begin: KeyOrSelector, end: KeyOrSelector, *, limit: int = 0, reverse: bool = False
    ) -> RangeResult:
        return self._get_range(begin, end, limit, reverse, snapshot=False)

    def _get_range(
        self, begin: KeyOrSelector, end: KeyOrSelector, limit: int, reverse: bool, snapshot: bool
    ) -> RangeResult:
        return _Range(self, begin, end, limit, reverse, snapshot=snapshot)

    async def _bound(self, selector: KeySelector, snapshot: bool) -> bytes:
        """A selector as a range bound. With offset 1 it needs no read: the first key at or
        after `start` bounds the same rows as `start` itself."""
        check_selector(selector)
        if selector.offset == 1:
            key = min(selector.key, SYSTEM_PREFIX)
            return key_after(key) if selector.or_equal and key < SYSTEM_PREFIX else key
        return await self._get_key(selector, snapshot)

    async def _get_key(self, selector: KeySelector, snapshot: bool) -> bytes:
        """The key a selector names, seen through this transaction's own writes."""
        check_selector(selector)
        key = min(selector.key, SYSTEM_PREFIX)
        if selector.offset >= 1:
            start = key_after(key) if selector.or_equal and key < SYSTEM_PREFIX else key
            found = await self._nth(start, SYSTEM_PREFIX, selector.offset, False, snapshot)
            return found if found is not None else SYSTEM_PREFIX
        stop = key_after(key) if selector.or_equal and key < SYSTEM_PREFIX else key
        found = await self._nth(b"", stop, 1 - selector.offset, True, snapshot)
        return found if found is not None else b""

    async def _nth(
        self, begin: bytes, end: bytes, n: int, reverse: bool, snapshot: bool
    ) -> bytes | None:
        rows: list[KeyValue] = []
        async for page in self._pages(begin, end, n, reverse, snapshot):
            rows.extend(page)
        return rows[-1].key if len(rows) == n else None

    async def _pages(
        self, begin: bytes, end: bytes, limit: int, reverse: bool, snapshot: bool
    ) -> AsyncIterator[list[KeyValue]]:
        """Rows in [begin, end) merged with this transaction's writes, a stored page at a time.

        The read conflict range is recorded before reading, for the whole range; when the
        limit ends the read early it shrinks to the rows handed out.
        """
        self._check_usable()
        end = min(end, SYSTEM_PREFIX)
        if begin >= end:
            return
        writes = self._writes
        writes.check_readable(begin, end)
        local = writes.keys_in(begin, end)
        if writes.cleared_whole(begin, end):
            # Our own clear decides this range: no stored row matters and nothing conflicts.
            own = [
                KeyValue(key, value)
                for key in local
                if (value := writes.resolve(key, None)) is not None
            ]
            if reverse:
                own.reverse()
            if own:
                yield own[:limit] if limit else own
            return
        conflict = _ReadRange(begin, end)
        if not snapshot:
            self._reads.append(conflict)
        if reverse:
            local.reverse()
        merge = bool(local) or writes.clears_within(begin, end)
        low, high = begin, end
        page = min(limit, LARGEST_PAGE) if 0 < limit < FIRST_PAGE else FIRST_PAGE
        remaining = limit or -1
        li = 0
        store_done = False

        def ahead(a: bytes, b: bytes) -> bool:
            return a > b if reverse else a < b

        while not store_done:
            fetch = functools.partial(_fetch_page, begin=low, end=high, reverse=reverse, limit=page)
            rows = await self._with_reader(fetch)
            conflict.rows += len(rows)
            if len(rows) < page:
                store_done = True
            elif reverse:
                high = rows[-1][0]
            else:
                low = key_after(rows[-1][0])
            page = min(page * 2, LARGEST_PAGE)
            out: list[KeyValue] = []
            if not merge:
                out = [KeyValue(key, value) for key, value in rows[: max(remaining, 0) or None]]
            else:
                for key, stored in rows:
                    while li < len(local) and ahead(local[li], key):
                        value = writes.resolve(local[li], None)
                        if value is not None:
                            out.append(KeyValue(local[li], value))
                        li += 1
                    seen: bytes | None = stored
                    if li < len(local) and local[li] == key:
                        li += 1
                        seen = writes.resolve(key, stored)
                    elif writes.is_cleared(key):
                        seen = None
                    if seen is not None:
                        out.append(KeyValue(key, seen))
            if store_done:  # what is left of our own writes lies past the last stored row
                for key in local[li:]:
                    value = writes.resolve(key, None)
                    if value is not None:
                        out.append(KeyValue(key, value))
            if 0 <= remaining <= len(out):
                out = out[:remaining]
                store_done = True
            if out and len(out) == remaining:  # the limit ended the read here
                if reverse:
                    conflict.begin = out[-1].key
                else:
                    conflict.end = key_after(out[-1].key)
            if out:
                remaining -= len(out)
                yield out
            if remaining == 0:
                return

    # -- mutations -------------------------------------------------------------------------
    def _record(self, mutation: Mutation) -> None:
        self._check_usable()
        self._writes.record(mutation)

    def set(self, key: bytes, value: bytes) -> None:
        check_key(self._limits, key, writing=True)
        check_value(self._limits, value)
        self._record(Mutation(Op.SET, key, value))

    def clear(self, key: bytes) -> None:
        check_key(self._limits, key, writing=True)
        self._record(Mutation(Op.CLEAR, key))

    def clear_range(self, begin: bytes, end: bytes) -> None:
        check_range(begin, end)
        if begin < end:
            self._record(Mutation(Op.CLEAR_RANGE, begin, end))

    def atomic(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        check_key(self._limits, key, writing=True)
        check_value(self._limits, param)
        self._record(Mutation(Op.ATOMIC, key, param, op))

    def _check_placeholder(self, data: bytes, what: str) -> None:
        if len(data) < 4 or int.from_bytes(data[-4:], "little") + 10 > len(data) - 4:
            raise FDBError(
                ErrorCode.CLIENT_INVALID_OPERATION,
                f"versionstamped {what}: no 10-byte placeholder at the offset in its last 4 bytes",
            )

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        self._check_placeholder(key, "key")
        check_key(self._limits, key[:-4], writing=True)
        check_value(self._limits, value)
        self._record(Mutation(Op.VERSIONSTAMPED_KEY, key, value))

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        check_key(self._limits, key, writing=True)
        self._check_placeholder(value, "value")
        check_value(self._limits, value[:-4])
        self._record(Mutation(Op.VERSIONSTAMPED_VALUE, key, value))

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_usable()
        check_range(begin, end)
        self._reads.append(_ReadRange(begin, end))

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_usable()
        check_range(begin, end)
        if begin < end:
            self._write_conflicts.append((begin, end))

    # -- watches and versions --------------------------------------------------------------
    def watch(self, key: bytes) -> Watch:
        self._check_usable()
        check_key(self._limits, key, writing=False)
        watch = self._engine.create_watch(key)
        if not watch.done():
            self._attempt.watches.append(watch)
        return watch

    def get_versionstamp(self) -> Awaitable[bytes]:
        attempt = self._attempt
        if attempt.stamp is None:
            attempt.stamp = asyncio.get_running_loop().create_future()
            if self._state is _State.COMMITTED:
                self._settle_stamp()
            elif self._state in (_State.FAILED, _State.CANCELLED):
                attempt.stamp.set_exception(
                    self._error or FDBError(ErrorCode.TRANSACTION_CANCELLED)
                )
        return attempt.stamp

    def _settle_stamp(self) -> None:
        stamp = self._attempt.stamp
        if stamp is None or stamp.done():
            return
        if self._stamp_value is None:
            stamp.set_exception(FDBError(ErrorCode.NO_COMMIT_VERSION))
        else:
            stamp.set_result(self._stamp_value)

    def get_committed_version(self) -> int:
        return self._committed_version

    # -- commit ----------------------------------------------------------------------------
    async def commit(self) -> None:
        self._check_usable()
        try:
            # Reads still in flight decide the read version and may add conflict ranges.
            await self._attempt.settled()
            armed = [(watch, await self._baseline(watch)) for watch in self._attempt.watches]
            self._check_usable()
            self._state = _State.COMMITTING
            if self._writes or self._write_conflicts:
                version, stamp = await self._commit_writes(armed)
            else:
                await self._commit_read_only(armed)
                version, stamp = -1, None
        except BaseException as error:
            self._state = _State.FAILED
            self._error = error if isinstance(error, FDBError) else None
            self._attempt.abandon(error)
            raise
        self._attempt.watches = []  # armed: the engine's registry has them now
        self._state = _State.COMMITTED
        self._committed_version = version
        self._stamp_value = stamp
        self._settle_stamp()

    async def _baseline(self, watch: SqliteWatch) -> object:
        """What `watch` compares against: the value this transaction sees at its key."""
        if not self._writes.needs_store(watch.key) or isinstance(
            self._writes.lookup(watch.key), Pending
        ):
            return AFTER_COMMIT
        return await self._get(watch.key, snapshot=True)

    async def _commit_read_only(self, watches: list[tuple[SqliteWatch, object]]) -> None:
        self._attempt.release()
        if watches:
            # Without writes every baseline is a value read at the read version.
            armed = [
                (watch, base) for watch, base in watches if base is None or isinstance(base, bytes)
            ]
            await self._engine.run(self._engine.arm_read_only, armed)

    async def _commit_writes(self, watches: list[tuple[SqliteWatch, object]]) -> tuple[int, bytes]:
        attempt = self._attempt
        reads = _coalesce(self._reads) if attempt.read_version is not None else []
        size = (
            self._writes.size
            + sum(len(b) + len(e) for b, e, _ in reads)
            + sum(len(b) + len(e) for b, e in self._write_conflicts)
        )
        if size > self._limits.transaction_size:
            raise FDBError(
                ErrorCode.TRANSACTION_TOO_LARGE,
                f"{size} bytes, limit {self._limits.transaction_size}",
            )
        if watches:
            await self._engine.run(self._engine.ensure_watcher)
        if (
            attempt.read_version is not None
            and time.monotonic() - attempt.read_started > self._limits.transaction_time
        ):
            raise FDBError(ErrorCode.TRANSACTION_TOO_OLD)
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        request = CommitRequest(
            read_version=attempt.read_version,
            read_time=attempt.read_time,
            reads=reads,
            mutations=self._writes.mutations,
            write_conflicts=self._write_conflicts,
            watches=watches,
            future=future,
        )
        attempt.release()
        self._engine.submit_commit(request)
        return await future

    # -- lifecycle -------------------------------------------------------------------------
    async def on_error(self, error: BaseException) -> None:
        if not isinstance(error, FDBError) or not error.retryable:
            raise error
        if self._retry_limit is not None and self._retries >= self._retry_limit:
            raise error
        delay = random.uniform(self._backoff / 2, self._backoff)
        if self._timeout is not None:
            remaining = self._timeout - (time.monotonic() - self._created)
            if remaining <= delay:
                raise FDBError(
                    ErrorCode.TRANSACTION_TIMED_OUT, f"after {self._timeout} s"
                ) from error
        await asyncio.sleep(delay)
        self._retries += 1
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        created = self._created
        self._new_attempt("the transaction was retried")
        self._clear_state()
        self._created = created  # the timeout spans retries, as in FDB

    def reset(self) -> None:
        """Start over as a new transaction (FDB's reset clears options too)."""
        self._new_attempt("the transaction was reset")
        self._clear_state()
        self._retries = 0
        self._backoff = INITIAL_BACKOFF_S
        self._timeout = None
        self._retry_limit = None

    def cancel(self) -> None:
        if self._state is _State.COMMITTED:
            self._attempt.release()
            return
        self._error = FDBError(ErrorCode.TRANSACTION_CANCELLED)
        self._attempt.abandon(self._error)
        self._state = _State.CANCELLED

    def set_timeout(self, seconds: float | None) -> None:
        if seconds is not None and seconds < 0:
            raise FDBError(ErrorCode.INVALID_OPTION_VALUE, f"timeout {seconds}")
        self._timeout = seconds or None

    def set_retry_limit(self, retries: int | None) -> None:
        if retries is not None and retries < -1:
            raise FDBError(ErrorCode.INVALID_OPTION_VALUE, f"retry limit {retries}")
        self._retry_limit = None if retries is None or retries == -1 else retries
