"""Watches for the sqlite engine: a thread-safe registry and a thread that sees other processes.

A watch is registered with a baseline (the value its transaction saw) and then verified
against the stored value, so a change between the transaction's read and the registration
is never lost. After that, the committer fires the watches its own commits touch, and the
watcher thread fires those other processes' commits touch.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..base import FutureWatch
from ..errors import ErrorCode, FDBError
from . import schema


class SqliteWatch(FutureWatch):
    """A watch whose future the registry settles (committer or watcher thread)."""

    def __init__(self, registry: WatchRegistry, key: bytes, future: asyncio.Future[None]) -> None:
        super().__init__(key, future)
        self._registry = registry


class Result:
    """A value to complete a future with (an exception fails it instead)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


#: How a future ends: None (a watch fired), a Result, or the error it fails with.
Outcome = Result | BaseException | None


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, outcome in outcomes:
        if future.done():
            continue
        if isinstance(outcome, StopIteration):  # futures refuse it; keep the news, not the type
            outcome = RuntimeError(f"StopIteration raised: {outcome!r}")
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome.value if isinstance(outcome, Result) else None)


def settle_threadsafe(outcomes: Iterable[tuple[asyncio.Future[Any], Outcome]]) -> None:
    """Complete futures from any thread, one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]]
    by_loop = defaultdict(list)
    for future, outcome in outcomes:
        by_loop[future.get_loop()].append((future, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody awaiting
            loop.call_soon_threadsafe(_settle_all, items)


class WatchRegistry:
    """Every armed watch of one engine, by key, with the baseline each one compares against."""

    def __init__(self, max_watches: int) -> None:
        self._lock = threading.Lock()
        self._max = max_watches
        self._pending = 0
        self._by_key: dict[bytes, dict[SqliteWatch, bytes | None]] = {}
        self._sorted_keys: list[bytes] | None = None
        self._failure: BaseException | None = None  # the watcher died
        self._closed: BaseException | None = None  # the engine closed

    @property
    def pending(self) -> int:
        return self._pending

    def create(self, key: bytes) -> SqliteWatch:
        """A new, not yet armed watch (call on its event loop). Past the cap it fails with 1032."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watch = SqliteWatch(self, key, future)
        with self._lock:
            if self._pending >= self._max:
                future.set_exception(
                    FDBError(
                        ErrorCode.TOO_MANY_WATCHES, f"{self._pending} pending, limit {self._max}"
                    )
                )
                return watch
            self._pending += 1
        future.add_done_callback(lambda _: self._forget(watch))
        return watch

    def _forget(self, watch: SqliteWatch) -> None:
        if not watch.future.cancelled():
            watch.future.exception()  # a watch nobody awaits may fail without a warning
        with self._lock:
            self._pending -= 1
            armed = self._by_key.get(watch.key)
            if armed is not None and watch in armed:
                del armed[watch]
                if not armed:
                    del self._by_key[watch.key]
                    self._sorted_keys = None

    def register_and_verify(
        self, conn: sqlite3.Connection, armed: list[tuple[SqliteWatch, bytes | None]]
    ) -> None:
        """Arm watches with their baselines, then fire those whose key already moved on.

        `conn` must not be inside a transaction: the verification reads the newest state.
        """
        if not armed:
            return
        with self._lock:
            failure = self._closed or self._failure
            if failure is None:
                for watch, baseline in armed:
                    if not watch.done():
                        if watch.key not in self._by_key:
                            self._by_key[watch.key] = {}
                            self._sorted_keys = None
                        self._by_key[watch.key][watch] = baseline
        if failure is not None:  # nothing would ever fire them
            settle_threadsafe((watch.future, failure) for watch, _ in armed)
            return
        current = read_values(conn, {watch.key for watch, _ in armed})
        self.fire(current)

    def fire(
        self, values: dict[bytes, bytes | None], cleared: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        """Fire watches whose key now holds a value other than their baseline.

        `values` gives keys' new values; keys inside `cleared` ranges and absent from
        `values` are now absent.
        """
        fired: list[tuple[asyncio.Future[None], BaseException | None]] = []
        with self._lock:
            if not self._by_key:
                return
            updates = dict(values)
            for begin, end in cleared:
                for key in self._keys_between(begin, end):
                    updates.setdefault(key, None)
            for key, value in updates.items():
                armed = self._by_key.get(key)
                if not armed:
                    continue
                for watch, baseline in list(armed.items()):
                    if baseline != value:
                        del armed[watch]
                        fired.append((watch.future, None))
                if not armed:
                    del self._by_key[key]
                    self._sorted_keys = None
        settle_threadsafe(fired)

    def _keys_between(self, begin: bytes, end: bytes) -> list[bytes]:
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self._by_key)
        lo = bisect.bisect_left(self._sorted_keys, begin)
        hi = bisect.bisect_left(self._sorted_keys, end)
        return self._sorted_keys[lo:hi]

    def armed_keys(self) -> set[bytes]:
        with self._lock:
            return set(self._by_key)

    def fail_all(self, error: BaseException) -> None:
        """Fail every armed watch, and every watch armed from now on until `revive()`: the
        engine is closing or its watcher stopped, so nothing would fire them."""
        with self._lock:
            self._failure = error
            armed = [watch for watches in self._by_key.values() for watch in watches]
            self._by_key.clear()
            self._sorted_keys = None
        settle_threadsafe((watch.future, error) for watch in armed)

    def revive(self) -> None:
        """Accept watches again: a new watcher serves them (unless the engine is closed)."""
        with self._lock:
            self._failure = None

    def close(self, error: BaseException) -> None:
        """The engine closed: fail every watch, armed now or later, until `reopen()`."""
        with self._lock:
            self._closed = error
        self.fail_all(error)

    def reopen(self) -> None:
        with self._lock:
            self._closed = None
            self._failure = None


def read_values(conn: sqlite3.Connection, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
    values: dict[bytes, bytes | None] = {}
    for key in keys:
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        values[key] = None if row is None else row[0]
    return values


class Watcher:
    """A thread that notices commits made by other processes and fires the watches they touch.

    It polls SQLite's data_version (a shared-memory read) and, when it moves, reads which
    keys changed since the last version it looked at.
    """

    #: While nothing changes, each quiet poll waits longer, up to this many times the
    #: interval: an idle server then costs a tenth of the CPU, and a commit after a quiet
    #: spell is seen within 10 intervals (50 ms by default) instead of one.
    IDLE_SLOWDOWN = 10

    def __init__(self, path: Path, registry: WatchRegistry, interval: float) -> None:
        self._path = path
        self._registry = registry
        self._interval = interval
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="fdbsync-sqlite-watcher", daemon=True
        )
        #: Why the thread stopped, if it failed.
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Running, or about to run (not yet started or still starting)."""
        return not self._stop.is_set() and (self._thread.is_alive() or not self._ready.is_set())

    def wait_ready(self) -> None:
        """Block until the watcher has taken its starting version (never on the event loop)."""
        self._ready.wait()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = schema.connect(self._path)
            data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            seen = schema.current_version(conn)
            self._ready.set()
            wait = self._interval
            while not self._stop.wait(wait):
                try:
                    now = conn.execute("PRAGMA data_version").fetchone()[0]
                    if now != data_version:
                        seen = self._scan(conn, seen)
                        data_version = now
                        wait = self._interval
                    else:
                        wait = min(wait * 1.5, self._interval * self.IDLE_SLOWDOWN)
                except sqlite3.Error as error:
                    if not schema.is_busy(error):
                        raise
                    # Locked for a moment by another process: look again at the next poll.
        except BaseException as error:  # fail the watches that relied on us, then stop
            self.error = error
            self._registry.fail_all(
                FDBError(ErrorCode.OPERATION_FAILED, f"the watcher stopped: {error}")
            )
        finally:
            self._ready.set()
            if conn is not None:
                conn.close()

    def _scan(self, conn: sqlite3.Connection, seen: int) -> int:
        if conn.in_transaction:  # a scan interrupted by a busy error
            conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        try:
            version = schema.current_version(conn)
            # Taken after the read snapshot: watches armed later verify at a newer version.
            keys = self._registry.armed_keys()
            if not keys or version == seen:
                return version
            changed = {
                key
                for sql in (
                    "SELECT key FROM kv WHERE version > ?",
                    "SELECT key FROM tombstones WHERE version > ?",
                )
                for (key,) in conn.execute(sql, (seen,))
                if key in keys
            }
            ranges = conn.execute(
                "SELECT begin_key, end_key FROM write_ranges WHERE version > ?", (seen,)
            ).fetchall()
            for key in keys:
                if any(begin <= key < end for begin, end in ranges):
                    changed.add(key)
            values = read_values(conn, changed)
        finally:
            conn.execute("COMMIT")
        self._registry.fire(values)
        return version
