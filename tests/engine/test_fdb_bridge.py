"""The FoundationDB engine's bridge from client futures to asyncio, without the client.

The client library cannot run here, so its futures are played by objects with the interface
of the bindings' `fdb.impl.Future` (on_ready, is_ready, block_until_ready, wait, cancel, and
`.value` for Value futures), completed from another thread as the client's network thread
completes them, raising an `FDBError(code)` from result access when they fail.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fdbsync.engine import ErrorCode, FDBError
from fdbsync.engine.fdb.bridge import Bridge, result, value
from fdbsync.engine.fdb.watches import WatchSet

STEP_S = 5.0
DESCRIPTIONS = {1213: b"Transaction tag is being throttled"}


class BindingFDBError(Exception):
    """Plays the bindings' `fdb.FDBError`: a code, and a description from libfdb_c (bytes)."""

    def __init__(self, code: int) -> None:
        self.code = code

    @property
    def description(self) -> bytes:
        return DESCRIPTIONS.get(self.code, b"UNKNOWN_ERROR")

    def __str__(self) -> str:
        return f"{self.description.decode()} ({self.code})"


class ClientFuture:
    """A future with the interface of the bindings' `fdb.impl.Future`.

    `on_ready` calls back at once if the future is ready, else from whichever thread completes
    it; like the bindings, it reports and swallows what a callback raises. `cancel()` on a
    pending future makes it ready with operation_cancelled (1101).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._callbacks: list[Callable[[Any], None]] = []
        self._value: Any = None
        self._error: BaseException | None = None
        self.cancel_calls = 0
        self.callback_errors: list[BaseException] = []

    def on_ready(self, callback: Callable[[Any], None]) -> None:
        with self._lock:
            if not self._ready.is_set():
                self._callbacks.append(callback)
                return
        self._call(callback)

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def block_until_ready(self) -> None:
        self._ready.wait()

    def wait(self) -> Any:
        self.block_until_ready()
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> None:
        self.cancel_calls += 1
        self._finish(None, BindingFDBError(1101))

    # -- the network thread's side -----------------------------------------------------------
    def complete(self, outcome: Any) -> None:
        self._finish(outcome, None)

    def fail(self, code: int) -> None:
        self._finish(None, BindingFDBError(code))

    def _finish(self, outcome: Any, error: BaseException | None) -> None:
        with self._lock:
            if self._ready.is_set():
                return
            self._value, self._error = outcome, error
            self._ready.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._call(callback)

    def _call(self, callback: Callable[[Any], None]) -> None:
        try:
            callback(self)
        except Exception as error:  # the bindings print "Discarding uncaught exception..."
            self.callback_errors.append(error)


class ClientValue(ClientFuture):
    """The bindings' `Value`/`Key` future: `wait()` returns the future, `.value` the bytes."""

    def wait(self) -> Any:
        super().wait()
        return self

    @property
    def value(self) -> bytes | None:
        result: bytes | None = super().wait()
        return result


class Network:
    """One thread that completes futures, as the client's network thread does."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="fake-fdb-network", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def run(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def drain(self) -> None:
        """Wait until every job queued so far has run."""
        done = threading.Event()
        self.run(done.set)
        assert done.wait(STEP_S)

    def stop(self) -> None:
        self._jobs.put(None)
        self.thread.join(STEP_S)


@pytest.fixture
def network() -> Iterator[Network]:
    started = Network()
    yield started
    started.stop()


@pytest.fixture
def bridge() -> Bridge:
    return Bridge(BindingFDBError)


# -- values and errors --------------------------------------------------------------------------


async def test_results_completed_on_another_thread_arrive(bridge: Bridge, network: Network) -> None:
    """Integers, key-value pages, present and missing values all come through as they are."""
    version, page, present, missing = ClientFuture(), ClientFuture(), ClientValue(), ClientValue()
    awaited = asyncio.gather(
        bridge.future(version, result),
        bridge.future(page, result),
        bridge.future(present, value),
        bridge.future(missing, value),
    )
    network.run(lambda: version.complete(1234))
    network.run(lambda: page.complete(([("k", "v")], 1, False)))
    network.run(lambda: present.complete(b"stored"))
    network.run(lambda: missing.complete(None))
    got = await asyncio.wait_for(awaited, STEP_S)
    assert got == [1234, ([("k", "v")], 1, False), b"stored", None]


async def test_a_ready_future_settles_without_another_thread(bridge: Bridge) -> None:
    """on_ready calls back at once for a future that is already ready; that works too."""
    ready = ClientValue()
    ready.complete(b"now")
    assert await asyncio.wait_for(bridge.future(ready, value), STEP_S) == b"now"


@pytest.mark.parametrize(
    ("code", "name", "retryable"),
    [
        (1020, "not_committed", True),
        (1007, "transaction_too_old", True),
        (2101, "transaction_too_large", False),
    ],
)
async def test_errors_keep_the_fdb_code(
    bridge: Bridge, network: Network, code: int, name: str, retryable: bool
) -> None:
    """A failed future raises the engine API's FDBError with FoundationDB's own code."""
    failing = ClientValue()
    awaited = bridge.future(failing, value)
    network.run(lambda: failing.fail(code))
    with pytest.raises(FDBError) as caught:
        await asyncio.wait_for(awaited, STEP_S)
    assert (caught.value.code, caught.value.name, caught.value.retryable) == (code, name, retryable)


async def test_codes_the_engine_api_does_not_name_keep_the_clients_description(
    bridge: Bridge, network: Network
) -> None:
    failing = ClientFuture()
    awaited = bridge.future(failing, result)
    network.run(lambda: failing.fail(1213))
    with pytest.raises(FDBError) as caught:
        await asyncio.wait_for(awaited, STEP_S)
    assert caught.value.code == 1213
    assert "Transaction tag is being throttled" in str(caught.value)


def test_synchronous_calls_raise_engine_errors(bridge: Bridge) -> None:
    def set_option(value: int) -> None:
        raise BindingFDBError(2006)

    with pytest.raises(FDBError) as caught:
        bridge.call(set_option, -5)
    assert caught.value.code == ErrorCode.INVALID_OPTION_VALUE
    assert bridge.call(lambda x: x + 1, 1) == 2


def test_stop_iteration_cannot_escape_into_a_future(bridge: Bridge) -> None:
    assert isinstance(bridge.error(StopIteration()), RuntimeError)
    other = ValueError("kept")
    assert bridge.error(other) is other


# -- cancellation -------------------------------------------------------------------------------


async def test_cancelling_the_awaiting_task_cancels_the_client_future(
    bridge: Bridge, network: Network
) -> None:
    pending = ClientValue()

    async def read() -> bytes | None:
        found: bytes | None = await bridge.future(pending, value)
        return found

    task = asyncio.create_task(read())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)  # the future's done callbacks run on the loop's next turn
    assert pending.cancel_calls == 1
    # Its 1101 reaches a future that is already done: nothing breaks, nothing is raised.
    network.drain()
    await asyncio.sleep(0.01)
    assert pending.callback_errors == []


async def test_cancelling_after_the_result_leaves_the_client_future_alone(
    bridge: Bridge, network: Network
) -> None:
    done = ClientFuture()
    awaited = bridge.future(done, result)
    network.run(lambda: done.complete(7))
    assert await asyncio.wait_for(awaited, STEP_S) == 7
    awaited.cancel()
    assert done.cancel_calls == 0


# -- many futures, few threads, few wake-ups ----------------------------------------------------


async def test_many_pending_futures_take_no_thread_each(bridge: Bridge, network: Network) -> None:
    """Thousands of pending reads and watches cost no thread: the network thread completes
    them all, and the event loop reads each result."""
    before = threading.active_count()
    futures = [ClientValue() for _ in range(5000)]
    awaited = [bridge.future(future, value) for future in futures]
    await asyncio.sleep(0.05)
    assert threading.active_count() == before

    def complete_all() -> None:
        for index, future in enumerate(futures):
            future.complete(b"%d" % index)

    network.run(complete_all)
    got = await asyncio.wait_for(asyncio.gather(*awaited), STEP_S)
    assert got == [b"%d" % index for index in range(5000)]
    assert threading.active_count() == before


async def test_a_burst_of_results_wakes_the_loop_once(
    bridge: Bridge, network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results completed while the loop is busy are handed over with one wake-up."""
    loop = asyncio.get_running_loop()
    wakeups: list[object] = []
    real = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        wakeups.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    futures = [ClientFuture() for _ in range(1000)]
    awaited = [bridge.future(future, result) for future in futures]
    network.run(lambda: [future.complete(index) for index, future in enumerate(futures)])
    network.drain()  # blocks this loop until the burst is over
    assert await asyncio.wait_for(asyncio.gather(*awaited), STEP_S) == list(range(1000))
    assert len(wakeups) == 1


# -- a loop that is gone ------------------------------------------------------------------------


def test_a_result_after_the_loop_closed_is_dropped_quietly(
    bridge: Bridge, network: Network
) -> None:
    """A future completed after its event loop closed (a worker shutting down while a watch is
    pending) neither raises on the network thread nor touches the closed loop."""
    loop = asyncio.new_event_loop()
    pending, cancelled = ClientFuture(), ClientFuture()

    async def start() -> tuple[asyncio.Future[Any], asyncio.Future[Any]]:
        return bridge.future(pending, result), bridge.future(cancelled, result)

    awaited, abandoned = loop.run_until_complete(start())
    abandoned.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    network.run(lambda: pending.complete(1))
    network.drain()
    assert pending.callback_errors == [] and cancelled.callback_errors == []
    assert not awaited.done()
    assert cancelled.cancel_calls == 1


# -- watches ------------------------------------------------------------------------------------


async def test_a_watch_fires_when_its_client_watch_does(bridge: Bridge, network: Network) -> None:
    watches = WatchSet(max_watches=10)
    watch = watches.create(b"k")
    client_watch = ClientFuture()
    watch.attach(bridge, client_watch)
    assert watches.pending == 1 and not watch.done()
    network.run(lambda: client_watch.complete(None))
    await asyncio.wait_for(watch, STEP_S)
    assert watch.error() is None
    await asyncio.sleep(0)
    assert watches.pending == 0


async def test_a_watch_fails_with_its_client_watchs_error(bridge: Bridge, network: Network) -> None:
    watches = WatchSet(max_watches=10)
    watch = watches.create(b"k")
    client_watch = ClientFuture()
    watch.attach(bridge, client_watch)
    network.run(lambda: client_watch.fail(1020))
    with pytest.raises(FDBError) as caught:
        await asyncio.wait_for(watch, STEP_S)
    assert caught.value.code == 1020


async def test_cancelling_or_failing_a_watch_cancels_its_client_watch(bridge: Bridge) -> None:
    """Cancelled by the application or failed by fdbsync (engine closed), the client watch is
    cancelled too, so the client's own watch count goes down."""
    watches = WatchSet(max_watches=10)
    cancelled, closed = watches.create(b"a"), watches.create(b"b")
    first, second = ClientFuture(), ClientFuture()
    cancelled.attach(bridge, first)
    closed.attach(bridge, second)
    cancelled.cancel()
    watches.close(FDBError(ErrorCode.OPERATION_CANCELLED, "engine closed"))
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    with pytest.raises(FDBError) as caught:
        await closed
    assert caught.value.code == 1101
    await asyncio.sleep(0)  # done callbacks run on the loop's next turn
    assert (first.cancel_calls, second.cancel_calls) == (1, 1)
    assert watches.pending == 0


async def test_the_watch_cap_refuses_with_1032_until_a_slot_frees() -> None:
    watches = WatchSet(max_watches=2)
    held = [watches.create(b"a"), watches.create(b"b")]
    refused = watches.create(b"c")
    assert refused.done()
    error = refused.error()
    assert isinstance(error, FDBError) and error.code == ErrorCode.TOO_MANY_WATCHES
    assert watches.pending == 2
    held[0].cancel()
    await asyncio.sleep(0)
    assert watches.pending == 1
    assert not watches.create(b"c").done()
