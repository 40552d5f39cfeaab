"""A real uvicorn server for tests, run as a task on the test's own event loop.

httpx's ASGITransport buffers whole responses, so it cannot show a live page's SSE stream;
live tests need a real server. This one listens on 127.0.0.1 on an ephemeral port and runs
on the current event loop, so a test can share the app's engine and repo objects and await
them directly. It can be stopped and started again on the same port, as a deploy would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Literal, Self

import uvicorn
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fdbsync.web.live import LiveSync

__all__ = ["HOST", "LiveServer", "LiveServerError", "serve"]

#: Test servers listen on the loopback interface only.
HOST = "127.0.0.1"

# How many servers are stopping right now: sse-starlette's shutdown flag is process-global,
# so it is lowered only when the last of them has stopped.
_stopping = 0


class LiveServerError(RuntimeError):
    """The server could not start (e.g. the app's lifespan raised) or did not stop cleanly."""


class LiveServer:
    """One ASGI app served by uvicorn on `HOST`, on the event loop that calls `start()`.

    `port=0` takes an ephemeral port on the first start; later starts reuse it, so clients
    reconnect to the same `url` after a restart. Use it as an async context manager, or call
    `start()` and `stop()`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        port: int = 0,
        lifespan: Literal["on", "off", "auto"] = "on",
        startup_timeout: float = 10.0,
        graceful_shutdown_timeout: int = 3,
    ) -> None:
        self.app = app
        self.lifespan = lifespan
        self.startup_timeout = startup_timeout
        #: A backstop: open responses are cancelled once this many seconds of a stop pass.
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self._port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (known once it has first started)."""
        if self._port == 0:
            raise RuntimeError("the server has not started yet, so it has no port")
        return self._port

    @property
    def url(self) -> str:
        """The server's base URL, e.g. "http://127.0.0.1:54321"."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def uvicorn_server(self) -> uvicorn.Server | None:
        """The running `uvicorn.Server` (e.g. for its `server_state.connections`)."""
        return self._server if self.running else None

    async def start(self) -> None:
        """Listen and run the app's lifespan startup; return once requests are served.

        Raises `LiveServerError` (caused by what the lifespan raised, when it did) if the
        server cannot start, and `TimeoutError` if startup takes over `startup_timeout`.
        """
        if self._task is not None:
            raise RuntimeError(f"the server at {self.url} is already running")
        sock = self._bind()
        probe = _LifespanProbe(self.app)
        config = uvicorn.Config(
            probe,
            host=HOST,
            port=self._port,
            interface="asgi3",
            lifespan=self.lifespan,
            # uvicorn's default log config installs its own stderr handlers on every Config;
            # without it its records propagate to the root logger, where pytest captures them.
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=self.graceful_shutdown_timeout,
        )
        server = _Server(config)
        self._loop = asyncio.get_running_loop()
        self._server = server
        task = asyncio.create_task(self._serve(server, sock, probe), name=f"uvicorn {self.url}")
        self._task = task

        listening = asyncio.create_task(server.listening.wait())
        try:
            await asyncio.wait(
                {task, listening},
                timeout=self.startup_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            listening.cancel()
        if task.done():
            self._task = self._server = None
            if task.cancelled():
                raise LiveServerError(f"the server at {self.url} was cancelled while starting")
            error = task.exception()
            if isinstance(error, LiveServerError):
                raise error
            raise LiveServerError(f"the server at {self.url} died while starting") from error
        if not server.listening.is_set():
            # Stuck in the app's lifespan startup: nothing there looks at should_exit.
            task.cancel()
            await asyncio.wait({task})
            self._task = self._server = None
            raise TimeoutError(
                f"the server at {self.url} did not start within {self.startup_timeout:g} s "
                "(is the app's lifespan startup waiting for something?)"
            )

    async def stop(self) -> None:
        """Stop serving: end open SSE streams, close connections, run lifespan shutdown.

        Raises what the server task died of, or `LiveServerError` if lifespan shutdown failed.
        """
        task, server = self._task, self._server
        if task is None or server is None:
            return
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("stop() must run on the event loop that started the server")
        global _stopping
        # uvicorn only closes idle connections and waits for responses to finish; an SSE
        # response never finishes on its own. An fdbsync app's streams are ended through
        # its LiveSync, which touches no other server.
        server.should_exit = True
        live = getattr(getattr(self.app, "state", None), "fdbsync", None)
        raised = not isinstance(live, LiveSync)
        if isinstance(live, LiveSync):
            live.end_streams(reason="the test server is stopping")
        else:
            # Other apps' sse-starlette streams end when this process-global flag is set (a
            # watcher polls it every 0.5 s): it is raised for the stop and lowered after, as
            # nothing else resets it. It ends the streams of every server in the process.
            _stopping += 1
            AppStatus.should_exit = True
        try:
            await task
        finally:
            self._task = self._server = None
            if raised:
                _stopping -= 1
                if _stopping == 0:
                    AppStatus.should_exit = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        where = f"{HOST}:{self._port}" if self._port else f"{HOST}:?"
        return f"<LiveServer {where} {'running' if self.running else 'stopped'}>"

    def _bind(self) -> socket.socket:
        # Bound here rather than by uvicorn so the port is known before the server starts,
        # and with SO_REUSEADDR so a restart can take the port back while connections the
        # last run closed are still in TIME_WAIT.
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every response waits for a delayed ACK (about 40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self._port))
        except OSError as exc:
            sock.close()
            raise LiveServerError(f"cannot listen on {HOST}:{self._port}: {exc}") from exc
        self._port = sock.getsockname()[1]
        return sock

    async def _serve(self, server: _Server, sock: socket.socket, probe: _LifespanProbe) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:
            # uvicorn ends a failed startup with sys.exit(). Raised out of a task, SystemExit
            # stops the whole event loop (and the test run), so it becomes an ordinary error.
            reason = probe.failure or "the app's lifespan startup failed"
            raise LiveServerError(f"the server at {self.url} did not start: {reason}") from (
                probe.error or exc
            )
        finally:
            sock.close()  # uvicorn closes it on shutdown, but not after a failed startup
        if probe.shutdown_failed:
            reason = probe.failure or "the app's lifespan shutdown failed"
            raise LiveServerError(f"the server at {self.url} stopped, but {reason}") from (
                probe.error
            )


def serve(
    app: ASGIApp,
    *,
    port: int = 0,
    lifespan: Literal["on", "off", "auto"] = "on",
    startup_timeout: float = 10.0,
    graceful_shutdown_timeout: int = 3,
) -> LiveServer:
    """A `LiveServer` for `app`: `async with serve(app) as server: ...` runs it meanwhile."""
    return LiveServer(
        app,
        port=port,
        lifespan=lifespan,
        startup_timeout=startup_timeout,
        graceful_shutdown_timeout=graceful_shutdown_timeout,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens and leaving signal handlers alone."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # In the main thread uvicorn would take over SIGINT and SIGTERM for as long as it
        # serves: Ctrl-C would quietly stop this server instead of interrupting the tests,
        # and servers stopped in another order than they started restore each other's
        # handlers, leaving a stopped server's handler in place for good. Signals belong to
        # the test runner.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


class _LifespanProbe:
    """Passes everything to the app, keeping what its lifespan raised or reported."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.started = False
        self.shutdown_failed = False
        self.error: Exception | None = None
        self._reported: str | None = None

    @property
    def failure(self) -> str | None:
        """What went wrong, in a line: the exception when there is one (it becomes the
        error's cause, traceback and all), else the message the app sent."""
        if self.error is not None:
            return f"the app's lifespan raised {self.error!r}"
        return self._reported

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def probed_send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                self.started = True
            elif kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
                self.shutdown_failed = self.started
                self._reported = f"the app sent {kind}: {message.get('message') or '(no message)'}"
            await send(message)

        try:
            await self.app(scope, receive, probed_send)
        except Exception as exc:
            self.error = exc
            self.shutdown_failed = self.started
            raise
