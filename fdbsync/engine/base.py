"""The engine API: an async, FoundationDB-shaped key-value store every layer is written against.

An `Engine` opens transactions; a `Transaction` reads at one read version, buffers its writes,
and commits them atomically or fails with an `FDBError` carrying FDB's code. Everything here
means what it means in FoundationDB; the engines differ only in where the bytes live.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from .atomic import AtomicOp
from .errors import FDBError
from .keys import strinc
from .limits import Limits
from .selectors import KeyOrSelector, KeySelector

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes

    def __iter__(self) -> Generator[bytes, None, None]:
        yield self.key
        yield self.value


class RangeResult(abc.ABC):
    """The rows of a range read: iterate with `async for` (fetched in pages) or `to_list()`."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[KeyValue]: ...

    async def to_list(self) -> list[KeyValue]:
        return [kv async for kv in self]


class Watch(abc.ABC):
    """A one-shot notification that a key's value changed after its transaction committed.

    Await it to wait for the change. It fails with the transaction's error when the
    transaction does not commit, and `cancel()` stops it.
    """

    @abc.abstractmethod
    def __await__(self) -> Generator[Any, None, None]: ...

    @abc.abstractmethod
    def cancel(self) -> None: ...

    @abc.abstractmethod
    def done(self) -> bool: ...

    @property
    @abc.abstractmethod
    def key(self) -> bytes: ...

    def add_done_callback(self, fn: Callable[[Watch], None]) -> None:
        """Call `fn(self)` on the event loop once the watch has fired, failed or been
        cancelled (FDB's `on_ready`)."""
        asyncio.ensure_future(_settled(self)).add_done_callback(lambda _: fn(self))

    def error(self) -> BaseException | None:
        """Once done: None if the watch fired, else why it did not (its error, or
        CancelledError)."""
        raise NotImplementedError


class FutureWatch(Watch):
    """A watch backed by an asyncio future on its transaction's loop: what both engines
    build theirs on (the future is set when the key changes, failed when it cannot be)."""

    def __init__(self, key: bytes, future: asyncio.Future[None]) -> None:
        self._key = key
        self.future = future

    @property
    def key(self) -> bytes:
        return self._key

    def __await__(self) -> Generator[Any, None, None]:
        return self.future.__await__()

    def cancel(self) -> None:
        self.future.cancel()

    def done(self) -> bool:
        return self.future.done()

    def add_done_callback(self, fn: Callable[[Watch], None]) -> None:
        self.future.add_done_callback(lambda _: fn(self))

    def error(self) -> BaseException | None:
        if self.future.cancelled():
            return asyncio.CancelledError()
        return self.future.exception()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} key={self._key!r} done={self.done()}>"


async def _settled(watch: Watch) -> None:
    with contextlib.suppress(BaseException):
        await watch


class ReadView(abc.ABC):
    """Reads at the transaction's read version. `Transaction.snapshot` reads without conflicts."""

    @abc.abstractmethod
    async def get(self, key: bytes) -> bytes | None: ...

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values of several keys, in order: the same as a `get` of each, issued
        together. Engines may answer them in one round trip."""
        return list(await asyncio.gather(*(self.get(key) for key in keys)))

    @abc.abstractmethod
    async def get_key(self, selector: KeySelector) -> bytes: ...

    @abc.abstractmethod
    def get_range(
        self,
        begin: KeyOrSelector,
        end: KeyOrSelector,
        *,
        limit: int = 0,
        reverse: bool = False,
    ) -> RangeResult: ...

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> RangeResult:
        return self.get_range(prefix, strinc(prefix), limit=limit, reverse=reverse)

    @abc.abstractmethod
    async def get_read_version(self) -> int: ...


class SnapshotReads(Protocol):
    """What a transaction offers `SnapshotView`: its reads, with or without conflict ranges."""

    async def _get(self, key: bytes, snapshot: bool) -> bytes | None: ...

    async def _get_many(self, keys: Sequence[bytes], snapshot: bool) -> list[bytes | None]: ...

    async def _get_key(self, selector: KeySelector, snapshot: bool) -> bytes: ...

    def _get_range(
        self, begin: KeyOrSelector, end: KeyOrSelector, limit: int, reverse: bool, snapshot: bool
    ) -> RangeResult: ...

    async def get_read_version(self) -> int: ...


class SnapshotView(ReadView):
    """`transaction.snapshot`: the same read version and own writes, no read conflict ranges."""

    def __init__(self, tr: SnapshotReads) -> None:
        self._tr = tr

    async def get(self, key: bytes) -> bytes | None:
        return await self._tr._get(key, snapshot=True)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return await self._tr._get_many(keys, snapshot=True)

    async def get_key(self, selector: KeySelector) -> bytes:
        return await self._tr._get_key(selector, snapshot=True)

    def get_range(
        self, begin: KeyOrSelector, end: KeyOrSelector, *, limit: int = 0, reverse: bool = False
    ) -> RangeResult:
        return self._tr._get_range(begin, end, limit, reverse, snapshot=True)

    async def get_read_version(self) -> int:
        return await self._tr.get_read_version()


class Transaction(ReadView):
    """A FoundationDB-style transaction: serializable, read-your-writes, all or nothing.

    Mutations are buffered and sent at `commit()`. Use `Engine.transact()` to run a
    function with FDB's retry loop instead of calling `commit`/`on_error` yourself.
    """

    @property
    @abc.abstractmethod
    def snapshot(self) -> ReadView:
        """Reads that add no read conflict ranges (FDB's snapshot reads)."""

    # -- mutations -------------------------------------------------------------------------
    @abc.abstractmethod
    def set(self, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    def clear(self, key: bytes) -> None: ...

    @abc.abstractmethod
    def clear_range(self, begin: bytes, end: bytes) -> None: ...

    def clear_range_startswith(self, prefix: bytes) -> None:
        self.clear_range(prefix, strinc(prefix))

    @abc.abstractmethod
    def atomic(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        """Apply the atomic mutation `op` to `key` at commit (no read, no read conflict)."""

    # The named atomic operations, as the FDB bindings call them.
    def add(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.ADD, key, param)

    def max(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.MAX, key, param)

    def min(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.MIN, key, param)

    def byte_max(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.BYTE_MAX, key, param)

    def byte_min(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.BYTE_MIN, key, param)

    def bit_and(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.BIT_AND, key, param)

    def bit_or(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.BIT_OR, key, param)

    def bit_xor(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.BIT_XOR, key, param)

    def append_if_fits(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.APPEND_IF_FITS, key, param)

    def compare_and_clear(self, key: bytes, param: bytes) -> None:
        self.atomic(AtomicOp.COMPARE_AND_CLEAR, key, param)

    @abc.abstractmethod
    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        """Write `value` at `key` with the 10-byte placeholder at the offset given by `key`'s
        last 4 bytes (little-endian) replaced by the commit's versionstamp."""

    @abc.abstractmethod
    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        """Like set_versionstamped_key, for the placeholder in `value`."""

    # -- conflict ranges -------------------------------------------------------------------
    @abc.abstractmethod
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None: ...

    def add_read_conflict_key(self, key: bytes) -> None:
        self.add_read_conflict_range(key, key + b"\x00")

    @abc.abstractmethod
    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None: ...

    def add_write_conflict_key(self, key: bytes) -> None:
        self.add_write_conflict_range(key, key + b"\x00")

    # -- watches, versions, lifecycle ------------------------------------------------------
    @abc.abstractmethod
    def watch(self, key: bytes) -> Watch:
        """A watch on `key`, armed when this transaction commits."""

    @abc.abstractmethod
    def get_versionstamp(self) -> Awaitable[bytes]:
        """The commit's 10-byte versionstamp; resolves after a successful commit."""

    @abc.abstractmethod
    def get_committed_version(self) -> int:
        """The commit version after a successful commit; -1 for a read-only transaction."""

    @abc.abstractmethod
    async def commit(self) -> None: ...

    @abc.abstractmethod
    async def on_error(self, error: BaseException) -> None:
        """Back off and reset for a retry if `error` is retryable (and within the retry limit
        and timeout); otherwise raise it. FDB's `on_error`."""

    @abc.abstractmethod
    def reset(self) -> None: ...

    @abc.abstractmethod
    def cancel(self) -> None: ...

    @abc.abstractmethod
    def set_timeout(self, seconds: float | None) -> None:
        """Fail with 1031 transaction_timed_out once `seconds` have passed, retries included."""

    @abc.abstractmethod
    def set_retry_limit(self, retries: int | None) -> None:
        """Make on_error re-raise after `retries` retries."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving the block without committing discards the transaction's writes."""
        self.cancel()


TransactionFunction = Callable[[Transaction], Awaitable[T]]


class Engine(abc.ABC):
    """One open store. Open with `open_engine(url)`; use as `async with` or open()/close()."""

    url: str
    limits: Limits

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def create_transaction(self) -> Transaction: ...

    def _lifecycle(self) -> asyncio.Lock:
        """One open() or close() at a time (a lock per event loop: an asyncio.Lock belongs to
        the loop it first waits on, and engines may outlive a loop, as in test suites)."""
        locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            self.__dict__.setdefault("_lifecycle_locks", weakref.WeakKeyDictionary())
        )
        loop = asyncio.get_running_loop()
        lock = locks.get(loop)
        if lock is None:
            lock = locks[loop] = asyncio.Lock()
        return lock

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def transact(
        self,
        fn: TransactionFunction[T],
        *,
        retry_limit: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (FDB's timeout option, not a deadline)
    ) -> T:
        """Run `fn(tr)` and commit, retrying retryable errors with backoff (FDB's retry loop).

        `fn` may run more than once, so it must only touch the transaction. A commit that
        fails with 1021 commit_unknown_result may have been applied: `fn` is retried, so make
        it idempotent (for example, check for a marker it writes) when that would be wrong.
        """
        tr = self.create_transaction()
        tr.set_retry_limit(retry_limit)
        tr.set_timeout(timeout)
        try:
            while True:
                try:
                    result = await fn(tr)
                    await tr.commit()
                    return result
                except FDBError as error:
                    await tr.on_error(error)
        finally:
            tr.cancel()
