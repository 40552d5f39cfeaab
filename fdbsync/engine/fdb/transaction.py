"""The FoundationDB engine's transaction: the engine API over one client transaction.

Reads, writes, conflict ranges, options and `on_error` go straight to the client, which does
read-your-writes, conflicts, backoff, timeouts and retry limits itself. fdbsync adds what the
engine API promises beyond the client:

- limits are checked when a write is made, not when the commit fails (the client defers them);
- a transaction's state (committing, committed, cancelled) is checked before touching it;
- `get_versionstamp()` may be called after the commit, and fails with the commit's error;
- a `transaction_time` under FoundationDB's 5 s is enforced on the client;
- watches never make their transaction conflict. The client's watch reads its key with a
  conflict range, so a watch is armed at commit: by this transaction when it writes nothing,
  else by a read-only transaction at this one's read version (keys it did not write) or its
  commit version (keys it wrote), comparing against the value this transaction saw or left.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from ..atomic import AtomicOp
from ..base import KeyValue, RangeResult, ReadView, SnapshotView, Transaction, Watch
from ..checks import (
    check_key,
    check_range,
    check_readable_key,
    check_selector,
    check_value,
)
from ..errors import ErrorCode, FDBError
from ..selectors import KeyOrSelector, KeySelector, as_selector
from .bridge import result, value
from .client import MAX_TRANSACTION_TIME
from .watches import FdbWatch, fail_all

if TYPE_CHECKING:
    from .engine import FdbEngine

#: Keys from 0xff on are FoundationDB's system keyspace, closed to applications.
#: The C API's streaming modes (FDBStreamingMode).
WANT_ALL, ITERATOR, EXACT = -2, -1, 0
#: The client's timeout option is in milliseconds, at most INT_MAX.
MAX_TIMEOUT_MS = 2**31 - 1
#: The client's options a new or reset transaction has (fdbsync sets no database defaults).
DEFAULT_OPTIONS = {"timeout": 0, "retry_limit": -1}


class _State(Enum):
    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Attempt:
    """What one attempt (from creation, reset or retry to the next) knows about itself."""

    __slots__ = ("keys", "ranges", "read_started", "stamp", "stamp_source", "watches", "wrote")

    def __init__(self) -> None:
        self.wrote = False  # any mutation or write conflict range: the commit is not read-only
        self.keys: set[bytes] = set()  # keys written by set, clear, atomic ops
        self.ranges: list[tuple[bytes, bytes]] = []  # ranges cleared
        self.watches: list[FdbWatch] = []  # not yet armed
        self.stamp: asyncio.Future[bytes] | None = None  # handed out by get_versionstamp()
        self.stamp_source: Any = None  # the client's versionstamp future, asked before commit
        self.read_started: float | None = None  # monotonic time of the first read

    def writes(self, key: bytes) -> bool:
        return key in self.keys or any(begin <= key < end for begin, end in self.ranges)

    def fail_watches(self, error: BaseException, *, threadsafe: bool = False) -> FDBError:
        """Fail the unarmed watches with `error` (as an FDBError, which it returns)."""
        failure = (
            error
            if isinstance(error, FDBError)
            else FDBError(ErrorCode.TRANSACTION_CANCELLED, repr(error))
        )
        watches, self.watches = self.watches, []
        if threadsafe:
            for watch in watches:
                watch.fail_threadsafe(failure)
        else:
            fail_all(watches, failure)
        return failure

    def abandon(self, error: BaseException, *, threadsafe: bool = False) -> None:
        """Fail the unarmed watches and the versionstamp: no commit will arm or settle them.

        `threadsafe` for the finalizer of a transaction dropped unfinished, which the garbage
        collector may run on any thread, in the middle of anything.
        """
        failure = self.fail_watches(error, threadsafe=threadsafe)
        stamp = self.stamp
        if stamp is None or stamp.done():
            return
        if not threadsafe and _running_loop() is stamp.get_loop():
            stamp.set_exception(failure)
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody awaiting
                stamp.get_loop().call_soon_threadsafe(_fail_future, stamp, failure)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _page(source: Any) -> tuple[list[KeyValue], bool]:
    rows, _, more = source.wait()
    return [KeyValue(row.key, row.value) for row in rows], bool(more)


class _Range(RangeResult):
    """A range read, fetched a page at a time as the client's FDBRange does."""

    def __init__(
        self,
        tr: FdbTransaction,
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

    async def _pages(self, mode: int) -> AsyncIterator[list[KeyValue]]:
        tr, reverse = self._tr, self._reverse
        begin, end, limit = self._begin, self._end, self._limit
        check_selector(begin)
        check_selector(end)
        iteration = 1
        while True:
            reader = tr._reader(self._snapshot)
            # `_get_range` is the bindings' one-batch read under FDBRange, whose own
            # iteration blocks; selectors are read by attribute (key, or_equal, offset).
            source = reader._get_range(begin, end, limit, mode, iteration, reverse)
            rows, more = await tr._bridge.future(source, _page)
            if rows:
                yield rows
            if not rows or not more or (limit and len(rows) >= limit):
                return
            if limit:
                limit -= len(rows)
            iteration += 1
            if reverse:
                end = KeySelector.first_greater_or_equal(rows[-1].key)
            else:
                begin = KeySelector.first_greater_than(rows[-1].key)

    async def __aiter__(self) -> AsyncIterator[KeyValue]:
        async for rows in self._pages(ITERATOR):
            for row in rows:
                yield row

    async def to_list(self) -> list[KeyValue]:
        mode = EXACT if self._limit else WANT_ALL
        return [row async for rows in self._pages(mode) for row in rows]


class FdbTransaction(Transaction):
    def __init__(self, engine: FdbEngine, native: Any) -> None:
        self._engine = engine
        self._bridge = engine.bridge
        self._limits = engine.limits
        # A transaction_time under FoundationDB's own is enforced here; the cluster does 5 s.
        self._max_age = (
            engine.limits.transaction_time
            if engine.limits.transaction_time < MAX_TRANSACTION_TIME
            else None
        )
        self._tr = native
        self._snapshot = SnapshotView(self)
        self._timeout: float | None = None
        self._options = dict(DEFAULT_OPTIONS)  # as last set on the client transaction
        self._created = time.monotonic()
        self._start_attempt()

    def _start_attempt(self) -> None:
        self._state = _State.OPEN
        self._error: FDBError | None = None
        self._committed_version = -1
        self._attempt = _Attempt()
        # A transaction dropped unfinished still fails its watches and versionstamp.
        self._finalizer = weakref.finalize(
            self,
            self._attempt.abandon,
            FDBError(ErrorCode.TRANSACTION_CANCELLED, "the transaction was dropped"),
            threadsafe=True,
        )
        self._finalizer.atexit = False

    def _end_attempt(self, why: str) -> None:
        """Fail what waits on the current attempt, unless it committed, and start anew."""
        self._finalizer.detach()
        if self._state is not _State.COMMITTED:
            self._attempt.abandon(FDBError(ErrorCode.TRANSACTION_CANCELLED, why))
        self._start_attempt()

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
        self._engine.check_open()
        self._check_clock()

    def _check_clock(self) -> None:
        """1031 past the timeout; 1007 past a transaction_time shorter than the cluster's."""
        now = time.monotonic()
        if self._timeout is not None and now - self._created > self._timeout:
            raise FDBError(ErrorCode.TRANSACTION_TIMED_OUT, f"after {self._timeout} s")
        started = self._attempt.read_started
        if self._max_age is not None and started is not None and now - started > self._max_age:
            raise FDBError(ErrorCode.TRANSACTION_TOO_OLD, f"older than {self._max_age} s")

    def _reader(self, snapshot: bool) -> Any:
        """The client transaction (or its snapshot view) to read with, after the checks."""
        self._check_usable()
        if self._max_age is not None and self._attempt.read_started is None:
            self._attempt.read_started = time.monotonic()
        return self._tr.snapshot if snapshot else self._tr

    # -- reads -----------------------------------------------------------------------------
    async def get_read_version(self) -> int:
        version: int = await self._bridge.future(self._reader(False).get_read_version(), result)
        return version

    async def get(self, key: bytes) -> bytes | None:
        return await self._get(key, snapshot=False)

    async def _get(self, key: bytes, snapshot: bool) -> bytes | None:
        reader = self._reader(snapshot)
        check_readable_key(key)
        if len(key) > self._limits.key_size:
            return None  # no stored key is that long; FDB answers the same way
        found: bytes | None = await self._bridge.future(reader.get(key), value)
        return found

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return await self._get_many(keys, snapshot=False)

    async def _get_many(self, keys: Sequence[bytes], snapshot: bool) -> list[bytes | None]:
        """The gets issued together: the client pipelines them."""
        reader = self._reader(snapshot)
        for key in keys:
            check_readable_key(key)
        limit = self._limits.key_size
        pending = {
            key: self._bridge.future(reader.get(key), value)
            for key in dict.fromkeys(keys)
            if len(key) <= limit
        }
        if pending:
            await asyncio.gather(*pending.values())
        return [pending[key].result() if key in pending else None for key in keys]

    async def get_key(self, selector: KeySelector) -> bytes:
        return await self._get_key(selector, snapshot=False)

    async def _get_key(self, selector: KeySelector, snapshot: bool) -> bytes:
        reader = self._reader(snapshot)
        check_selector(selector)
        found: bytes = await self._bridge.future(reader.get_key(selector), value)
        return found

    def get_range(
        self, begin: KeyOrSelector, end: KeyOrSelector, *, limit: int = 0, reverse: bool = False
    ) -> RangeResult:
        return self._get_range(begin, end, limit, reverse, snapshot=False)

    def _get_range(
        self, begin: KeyOrSelector, end: KeyOrSelector, limit: int, reverse: bool, snapshot: bool
    ) -> RangeResult:
        return _Range(self, begin, end, limit, reverse, snapshot=snapshot)

    # -- mutations -------------------------------------------------------------------------
    def _wrote_key(self, key: bytes) -> None:
        attempt = self._attempt
        attempt.wrote = True
        attempt.keys.add(key)

    def set(self, key: bytes, value: bytes) -> None:
        self._check_usable()
        check_key(self._limits, key, writing=True)
        check_value(self._limits, value)
        self._tr.set(key, value)
        self._wrote_key(key)

    def clear(self, key: bytes) -> None:
        self._check_usable()
        check_key(self._limits, key, writing=True)
        self._tr.clear(key)
        self._wrote_key(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._check_usable()
        check_range(begin, end)
        if begin < end:
            self._tr.clear_range(begin, end)
            self._attempt.wrote = True
            self._attempt.ranges.append((begin, end))

    def atomic(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        self._check_usable()
        check_key(self._limits, key, writing=True)
        check_value(self._limits, param)
        getattr(self._tr, op.value)(key, param)  # the bindings name them as AtomicOp does
        self._wrote_key(key)

    def _check_placeholder(self, data: bytes, what: str) -> None:
        if len(data) < 4 or int.from_bytes(data[-4:], "little") + 10 > len(data) - 4:
            raise FDBError(
                ErrorCode.CLIENT_INVALID_OPERATION,
                f"versionstamped {what}: no 10-byte placeholder at the offset in its last 4 bytes",
            )

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        self._check_usable()
        self._check_placeholder(key, "key")
        check_key(self._limits, key[:-4], writing=True)
        check_value(self._limits, value)
        self._tr.set_versionstamped_key(key, value)
        self._attempt.wrote = True  # where it lands is known only at commit

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._check_usable()
        check_key(self._limits, key, writing=True)
        self._check_placeholder(value, "value")
        check_value(self._limits, value[:-4])
        self._tr.set_versionstamped_value(key, value)
        self._wrote_key(key)

    # -- conflict ranges -------------------------------------------------------------------
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_usable()
        check_range(begin, end)
        if begin < end:
            self._tr.add_read_conflict_range(begin, end)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_usable()
        check_range(begin, end)
        if begin < end:
            self._tr.add_write_conflict_range(begin, end)
            self._attempt.wrote = True

    # -- watches and versions --------------------------------------------------------------
    def watch(self, key: bytes) -> Watch:
        self._check_usable()
        check_key(self._limits, key, writing=True)
        watch = self._engine.watches.create(key)
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
        attempt = self._attempt
        stamp = attempt.stamp
        if stamp is None or stamp.done():
            return
        if attempt.stamp_source is None:  # a read-only commit
            stamp.set_exception(FDBError(ErrorCode.NO_COMMIT_VERSION))
        else:
            self._bridge.settle_into(stamp, attempt.stamp_source, value)

    def get_committed_version(self) -> int:
        return self._committed_version

    # -- commit ----------------------------------------------------------------------------
    async def commit(self) -> None:
        self._check_usable()
        attempt = self._attempt
        self._state = _State.COMMITTING
        watches = [watch for watch in attempt.watches if not watch.done()]
        arming: list[tuple[int, list[FdbWatch]]] = []
        try:
            if not attempt.wrote:
                # Read-only: the client's own watches cannot make this commit conflict.
                for watch in watches:
                    watch.attach(self._bridge, self._tr.watch(watch.key))
                await self._bridge.future(self._tr.commit(), result)
                version = -1
            else:
                unwritten = [watch for watch in watches if not attempt.writes(watch.key)]
                if unwritten:  # compared with what this transaction read
                    read_version = await self._bridge.future(self._tr.get_read_version(), result)
                    arming.append((read_version, unwritten))
                    self._check_clock()
                # The client hands out a versionstamp future only before the commit starts.
                attempt.stamp_source = self._tr.get_versionstamp()
                await self._bridge.future(self._tr.commit(), result)
                version = self._bridge.call(self._tr.get_committed_version)
                written = [watch for watch in watches if attempt.writes(watch.key)]
                if written:  # compared with what this transaction left
                    arming.append((version, written))
        except BaseException as error:
            if attempt is self._attempt and self._state is _State.COMMITTING:
                self._state = _State.FAILED
                self._error = error if isinstance(error, FDBError) else None
            attempt.abandon(error)
            raise
        if attempt is not self._attempt:
            return  # reset() while committing: what follows belongs to the new attempt
        self._state = _State.COMMITTED
        self._committed_version = version
        self._finalizer.detach()  # nothing left to abandon: the stamp is the client's to settle
        self._settle_stamp()
        if arming:
            try:
                await asyncio.gather(*(self._arm(v, group) for v, group in arming))
            except BaseException as error:
                attempt.fail_watches(error)  # the commit itself stands
                raise
        attempt.watches = []  # armed: they are the client's now

    async def _arm(self, version: int, watches: list[FdbWatch]) -> None:
        """Arm `watches` in a read-only transaction reading at `version`."""
        try:
            companion = self._bridge.call(self._engine.database().create_transaction)
            companion.set_read_version(version)
            for watch in watches:
                watch.attach(self._bridge, companion.watch(watch.key))
            await self._bridge.future(companion.commit(), result)
        except FDBError as error:
            fail_all(watches, error)

    # -- lifecycle -------------------------------------------------------------------------
    async def on_error(self, error: BaseException) -> None:
        """The client's on_error: it backs off and resets for a retryable error within the
        retry limit and timeout, and otherwise fails; then the error itself is raised."""
        if not isinstance(error, FDBError):
            raise error
        failure: FDBError | None = None
        try:
            await self._bridge.future(self._tr.on_error(error.code), result)
        except FDBError as raised:
            failure = raised
        if failure is None:
            self._end_attempt("the transaction was retried")
            return
        if failure.code == error.code:
            raise error
        raise failure from error

    def reset(self) -> None:
        """Start over as a new transaction (FDB's reset clears options too)."""
        self._tr.reset()
        self._end_attempt("the transaction was reset")
        self._created = time.monotonic()
        self._timeout = None
        self._options = dict(DEFAULT_OPTIONS)

    def cancel(self) -> None:
        if self._state is _State.COMMITTED:
            return
        self._tr.cancel()
        self._error = FDBError(ErrorCode.TRANSACTION_CANCELLED)
        self._state = _State.CANCELLED
        self._attempt.abandon(self._error)

    def set_timeout(self, seconds: float | None) -> None:
        """FDB's timeout option (milliseconds; 0 is none), counted from creation or reset."""
        if seconds is not None and seconds < 0:
            raise FDBError(ErrorCode.INVALID_OPTION_VALUE, f"timeout {seconds}")
        self._timeout = seconds or None
        millis = 0 if not seconds else min(MAX_TIMEOUT_MS, max(1, math.ceil(seconds * 1000)))
        if millis != self._options["timeout"]:  # transact() sets both options every time
            self._bridge.call(self._tr.options.set_timeout, millis)
            self._options["timeout"] = millis

    def set_retry_limit(self, retries: int | None) -> None:
        """FDB's retry_limit option (-1 is none): on_error re-raises past it."""
        if retries is not None and retries < -1:
            raise FDBError(ErrorCode.INVALID_OPTION_VALUE, f"retry limit {retries}")
        limit = -1 if retries is None else retries
        if limit != self._options["retry_limit"]:
            self._bridge.call(self._tr.options.set_retry_limit, limit)
            self._options["retry_limit"] = limit
