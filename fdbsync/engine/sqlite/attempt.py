"""One try of a transaction: its read snapshot, the work running on it, and what awaits its commit.

A transaction makes a new attempt on every reset or retry, so nothing from a discarded try
(a snapshot still being read, a watch, a versionstamp) can leak into the next one.
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


class Attempt:
    def __init__(self, engine: SqliteEngine) -> None:
        self.engine = engine
        self.reader: Reader | None = None
        self.read_version: int | None = None
        self.read_time = 0  # wall-clock microseconds when the snapshot was taken
        self.read_started = 0.0  # time.monotonic() then
        #: The worker job draining this snapshot's queue, if one was ever started.
        self.busy: concurrent.futures.Future[None] | None = None
        self.released = False
        self._queue: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
        self._queue = []
        self._queue_lock = threading.Lock()
        self._draining = False
        self.watches: list[SqliteWatch] = []
        self.stamp: asyncio.Future[bytes] | None = None

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run `fn` on a worker thread against this attempt's snapshot, taking it first if
        needed (call on the event loop).

        Work on one snapshot runs one piece at a time, in submission order, even when an
        awaiting task was cancelled and moved on. Work queued while a worker is busy with
        this snapshot is done by that same worker, and its results come back in one wake-up
        of the loop: reads issued together (asyncio.gather) cost one thread hop, not one each.
        """
        if self.released:
            raise FDBError(ErrorCode.TRANSACTION_CANCELLED, "this attempt was discarded")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._queue_lock:
            self._queue.append((fn, future))
            if self._draining:
                return future
            self._draining = True
        try:
            self.busy = self.engine.submit(self._drain)
        except BaseException:
            with self._queue_lock:
                self._queue.clear()
                self._draining = False
            raise
        return future

    def _drain(self) -> None:
        """Do the queued work in order until none is left (on a worker thread)."""
        while True:
            with self._queue_lock:
                if not self._queue:
                    self._draining = False
                    return
                batch, self._queue = self._queue, []
            settle_threadsafe(
                [(future, self._do(fn)) for fn, future in batch if not future.cancelled()]
            )

    def _do(self, fn: Callable[[sqlite3.Connection], Any]) -> Outcome:
        try:
            if self.reader is None:
                if self.released:  # never take a snapshot for an attempt already let go
                    raise FDBError(ErrorCode.TRANSACTION_CANCELLED, "this attempt was discarded")
                self._take_snapshot()
            assert self.reader is not None
            return Result(fn(self.reader.conn))
        except sqlite3.Error as error:
            return schema.as_fdb_error(error, "reading")
        except BaseException as error:  # whatever happens, the awaiting task hears of it
            return error

    def _take_snapshot(self) -> None:
        reader = self.engine.checkout_reader()
        try:
            version, self.read_time = reader.begin()
        except BaseException:
            self.engine.release_reader(reader)
            raise
        self.read_started = time.monotonic()
        self.reader = reader
        self.read_version = version  # last: the loop reads it as "the snapshot is taken"

    async def settled(self) -> None:
        """Wait until the work already submitted on this snapshot has finished."""
        if self.busy is not None and not self.busy.done():
            await asyncio.wait([asyncio.wrap_future(self.busy)])

    def release(self) -> None:
        """Give the snapshot back to the pool once the work on it has finished."""
        if self.released:
            return
        self.released = True
        if self.busy is None:
            self._give_back()
        else:
            self.busy.add_done_callback(lambda _: self._give_back())

    def _give_back(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            self.engine.release_reader(reader)

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
