"""FoundationDB futures as asyncio futures, without a thread per pending operation.

The bindings call `on_ready` callbacks on the client's network thread. The callback only
hands the finished future to its event loop (one wake-up for however many finish together);
the result is read on the loop, where it cannot block: the future is already ready. Cancelling
the asyncio future cancels the FDB future, and errors keep FoundationDB's codes.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..errors import ErrorCode, FDBError

T = TypeVar("T")

_KNOWN_CODES = frozenset(int(code) for code in ErrorCode)


class BindingFuture(Protocol):
    """What fdbsync uses of the bindings' `fdb.impl.Future`."""

    def on_ready(self, callback: Callable[[Any], None]) -> None: ...

    def is_ready(self) -> bool: ...

    def wait(self) -> Any: ...

    def cancel(self) -> None: ...


def result(source: Any) -> Any:
    """The result of a ready void, integer or key-value-array future."""
    return source.wait()


def value(source: Any) -> Any:
    """The bytes (or None) of a ready `Value` or `Key` future (their `wait()` returns the
    future itself; the bytes are its `.value`)."""
    return source.value


class Courier:
    """Carries work from the network thread to one event loop, one wake-up per batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._jobs: list[Callable[[], None]] = []
        self._scheduled = False

    def deliver(self, job: Callable[[], None]) -> None:
        """Run `job` on the loop soon (any thread). Dropped if the loop is gone or closed:
        nobody can be waiting on it then."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            return
        with self._lock:
            self._jobs.append(job)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # closed meanwhile
            with self._lock:
                self._jobs.clear()
                self._scheduled = False

    def _run(self) -> None:
        with self._lock:
            jobs, self._jobs = self._jobs, []
            self._scheduled = False
        for job in jobs:
            try:
                job()
            except Exception as error:  # a bug in one job must not strand the others
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "fdbsync: settling an FDB future failed", "exception": error}
                    )


_couriers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Courier]
_couriers = weakref.WeakKeyDictionary()
_couriers_lock = threading.Lock()


def courier_for(loop: asyncio.AbstractEventLoop) -> Courier:
    with _couriers_lock:
        courier = _couriers.get(loop)
        if courier is None:
            courier = _couriers[loop] = Courier(loop)
        return courier


class Bridge:
    """Bridges one bindings module's futures; `error_type` is its `fdb.FDBError`."""

    def __init__(self, error_type: type[BaseException]) -> None:
        self._error_type = error_type

    def future(self, source: BindingFuture, extract: Callable[[Any], T]) -> asyncio.Future[T]:
        """An asyncio future (on the running loop) for `source`, resolved by `extract(source)`."""
        target: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.settle_into(target, source, extract)
        return target

    def settle_into(
        self, target: asyncio.Future[T], source: BindingFuture, extract: Callable[[Any], T]
    ) -> None:
        """Resolve `target` from `source` once it is ready. If `target` ends first (cancelled,
        or failed by fdbsync), `source` is cancelled, freeing what it holds in the client."""
        courier = courier_for(target.get_loop())

        def settle() -> None:  # on the loop
            if target.done():
                return
            try:
                outcome = extract(source)
            except BaseException as raised:
                target.set_exception(self.error(raised))
            else:
                target.set_result(outcome)

        def ready(_: object) -> None:  # on the network thread, or here if already ready
            courier.deliver(settle)

        def release(_: asyncio.Future[T]) -> None:
            if not source.is_ready():
                source.cancel()

        target.add_done_callback(release)
        try:
            source.on_ready(ready)
        except Exception as raised:
            if not target.done():
                target.set_exception(self.error(raised))

    def error(self, raised: BaseException) -> BaseException:
        """The engine API's error for one raised by the bindings (FDB's own code kept)."""
        if isinstance(raised, self._error_type):
            code = int(getattr(raised, "code", ErrorCode.OPERATION_FAILED))
            return FDBError(code, None if code in _KNOWN_CODES else _description(raised))
        if isinstance(raised, StopIteration):  # futures refuse it
            return RuntimeError(f"StopIteration raised: {raised!r}")
        return raised

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a synchronous bindings function, raising its errors as the engine API's."""
        try:
            return fn(*args)
        except self._error_type as raised:
            raise self.error(raised) from None


def _description(error: BaseException) -> str | None:
    try:
        description = getattr(error, "description", None)
    except Exception:
        return None
    if isinstance(description, bytes):
        return description.decode(errors="replace")
    return None if description is None else str(description)
