"""One try of a transaction, and the read snapshots that attempts share.

A transaction makes a new attempt on every reset or retry, so nothing from a discarded try
(a watch, a versionstamp, its hold on a snapshot) can leak into the next one.

Attempts that ask for their first read while a snapshot is waiting to be taken join that
snapshot, like FoundationDB batching the read-version requests that arrive together: every
member asked before the snapshot was taken, so each sees every commit that finished before
it asked. Their reads then run on one connection and worker, and come back to the event loop
in one wake-up, however many transactions issued them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ErrorCode, FDBError
from . import schema
from .watches import Outcome, Result, SqliteWatch, settle_threadsafe

if TYPE_CHECKING:
    from .engine import Reader, SqliteEngine

T = TypeVar("T")

#: Attempts one snapshot serves at most: its reads run one at a time on one worker.
MAX_SHARERS = 64

_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]


class Snapshot:
    """A SQLite read snapshot (a read version) and the queue of reads that run on it.

    Reads run one at a time, in submission order, on a worker thread, even when the task
    awaiting one was cancelled and moved on. Work queued while a worker is busy with this
    snapshot is done by that same worker: reads issued together cost one thread hop.
    """

    def __init__(self, engine: SqliteEngine) -> None:
        self.engine = engine
        self.reader: Reader | None = None
        self.read_version: int | None = None
        self.read_time = 0  # wall-clock microseconds when the snapshot was taken
        self.read_started = 0.0  # time.monotonic() then
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._draining = False
        self._closing = False  # no one may join: it is (being) taken
        self._members = 0
        self._submitted = 0  # jobs queued so far
        self._finished = 0  # jobs done so far
        self._waiters: list[tuple[int, concurrent.futures.Future[None]]] = []

    def join(self) -> bool:
        """Become a member, if the snapshot is not taken yet and has room (loop thread)."""
        with self._lock:
            if self._closing or self._members >= MAX_SHARERS:
                return False
            self._members += 1
            return True

    def leave(self) -> None:
        """Stop being a member; the last one out gives the connection back (any thread)."""
        with self._lock:
            self._members -= 1
            give_back = self._members == 0 and not self._draining
        if give_back:
            self._give_back()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[asyncio.Future[T], int]:
        """Queue `fn` for this snapshot (loop thread); its future and its place in the queue."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queue.append((fn, future))
            self._submitted += 1
            number = self._submitted
            if self._draining:
                return future, number
            self._draining = True
        try:
            self.engine.submit(self._drain)
        except BaseException:
            with self._lock:
                self._queue.clear()
                self._draining = False
            raise
        return future, number

    async def finished(self, number: int) -> None:
        """Wait until the first `number` jobs have run (loop thread)."""
        with self._lock:
            if self._finished >= number:
                return
            waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._waiters.append((number, waiter))
        await asyncio.wrap_future(waiter)

    def _drain(self) -> None:
        """Do the queued work in order until none is left (worker thread)."""
        while True:
            with self._lock:
                if not self._queue:
                    self._draining = False
                    give_back = self._members == 0
                    break
                batch, self._queue = self._queue, []
                self._closing = True  # taken now, or about to be: later attempts need a new one
            settle_threadsafe(
                [(future, self._do(fn)) for fn, future in batch if not future.cancelled()]
            )
            with self._lock:
                self._finished += len(batch)
                ready = [w for n, w in self._waiters if n <= self._finished]
                self._waiters = [(n, w) for n, w in self._waiters if n > self._finished]
            for waiter in ready:
                waiter.set_result(None)
        if give_back:
            self._give_back()

    def _do(self, fn: Callable[[sqlite3.Connection], Any]) -> Outcome:
        try:
            if self.reader is None:
                if self._members == 0:  # never take a snapshot no attempt needs any more
                    raise FDBError(ErrorCode.TRANSACTION_CANCELLED, "this attempt was discarded")
                self._take()
            assert self.reader is not None
            return Result(fn(self.reader.conn))
        except sqlite3.Error as error:
            return schema.as_fdb_error(error, "reading")
        except BaseException as error:  # whatever happens, the awaiting task hears of it
            return error

    def _take(self) -> None:
        reader = self.engine.checkout_reader()
        try:
            version, self.read_time = reader.begin()
        except BaseException:
            self.engine.release_reader(reader)
            raise
        self.read_started = time.monotonic()
        self.reader = reader
        self.read_version = version  # last: the loop reads it as "the snapshot is taken"

    def _give_back(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            self.engine.release_reader(reader)


class Attempt:
    def __init__(self, engine: SqliteEngine) -> None:
        self.engine = engine
        self.snapshot: Snapshot | None = None
        self._last_job = 0  # this attempt's latest job in its snapshot's queue
        self.released = False
        self.watches: list[SqliteWatch] = []
        self.stamp: asyncio.Future[bytes] | None = None

    @property
    def read_version(self) -> int | None:
        """The snapshot's read version, once taken."""
        return None if self.snapshot is None else self.snapshot.read_version

    @property
    def read_time(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.read_time

    @property
    def read_started(self) -> float:
        return 0.0 if self.snapshot is None else self.snapshot.read_started

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run `fn` on a worker thread against this attempt's snapshot, joining one first if
        needed (call on the event loop)."""
        if self.released:
            raise FDBError(ErrorCode.TRANSACTION_CANCELLED, "this attempt was discarded")
        if self.snapshot is None:
            self.snapshot = self.engine.join_snapshot()
        future, self._last_job = self.snapshot.run(fn)
        return future

    async def settled(self) -> None:
        """Wait until the work this attempt submitted has finished."""
        if self.snapshot is not None:
            await self.snapshot.finished(self._last_job)

    def release(self) -> None:
        """Let go of the snapshot; it is given back once no attempt needs it."""
        if self.released:
            return
        self.released = True
        if self.snapshot is not None:
            self.snapshot.leave()

    def abandon(self, error: BaseException | None = None) -> None:
        """Release the snapshot and fail what waits on a commit that will not happen.

        Safe from any thread: it is also the finalizer of a transaction dropped unfinished.
        """
        self.release()
        failure = (
            error
            if isinstance(error, FDBError)
            else FDBError(ErrorCode.TRANSACTION_CANCELLED, None if error is None else repr(error))
        )
        waiting: list[asyncio.Future[Any]] = [watch.future for watch in self.watches]
        if self.stamp is not None:
            waiting.append(self.stamp)
        self.watches = []
        settle_threadsafe((future, failure) for future in waiting)
