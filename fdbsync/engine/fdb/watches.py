"""Watches on the FoundationDB engine: the engine API's Watch over a client watch future.

A watch is created when `Transaction.watch()` is called and given its client watch when the
transaction commits (see transaction.py). The engine counts its pending watches and refuses
more than `Limits.max_watches` with 1032, as the client's `max_watches` option does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable

from ..base import FutureWatch
from ..errors import ErrorCode, FDBError
from .bridge import BindingFuture, Bridge, result


class FdbWatch(FutureWatch):
    """A watch whose future the client's watch future settles (through the bridge)."""

    def attach(self, bridge: Bridge, source: BindingFuture) -> None:
        """Fire when the client's watch future does (cancelling it if this watch ends first)."""
        bridge.settle_into(self.future, source, result)

    def fail(self, error: BaseException) -> None:
        """End the watch with `error` (on its loop)."""
        if not self.future.done():
            self.future.set_exception(error)

    def fail_threadsafe(self, error: BaseException) -> None:
        """End the watch with `error` from any thread (a finalizer, another loop)."""
        loop = self.future.get_loop()
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody awaiting
            loop.call_soon_threadsafe(self.fail, error)

    def __repr__(self) -> str:
        return f"<FdbWatch key={self._key!r} done={self.done()}>"


def fail_all(watches: Iterable[FdbWatch], error: BaseException) -> None:
    """Fail `watches` with `error`: directly on the running loop, through their loop otherwise."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for watch in watches:
        if watch.future.get_loop() is running:
            watch.fail(error)
        else:
            watch.fail_threadsafe(error)


class WatchSet:
    """One engine's pending watches, capped at `max_watches`."""

    def __init__(self, max_watches: int) -> None:
        self._max = max_watches
        self._lock = threading.Lock()
        self._pending: set[FdbWatch] = set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def create(self, key: bytes) -> FdbWatch:
        """A new watch on the running loop; past the cap it has already failed with 1032."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watch = FdbWatch(key, future)
        with self._lock:
            refused = len(self._pending) >= self._max
            if not refused:
                self._pending.add(watch)
        if refused:
            future.set_exception(
                FDBError(ErrorCode.TOO_MANY_WATCHES, f"{self.pending} pending, limit {self._max}")
            )
        future.add_done_callback(lambda _: self._forget(watch))
        return watch

    def _forget(self, watch: FdbWatch) -> None:
        if not watch.future.cancelled():
            watch.future.exception()  # a watch nobody awaits may fail without a warning
        with self._lock:
            self._pending.discard(watch)

    def close(self, error: BaseException) -> None:
        """Fail every pending watch (the engine closed): their client watches are cancelled."""
        with self._lock:
            pending = list(self._pending)
        fail_all(pending, error)
