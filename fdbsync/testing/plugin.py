"""The pytest plugin: a `live_server` fixture that starts servers and stops them all.

Enable it in a conftest.py with `pytest_plugins = ["fdbsync.testing"]`; it needs
pytest-asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal, Protocol

import pytest_asyncio
from starlette.types import ASGIApp

from .server import LiveServer

__all__ = ["LiveServerFactory", "live_server"]


class LiveServerFactory(Protocol):
    """What the `live_server` fixture gives a test: call it to start a server for an app."""

    async def __call__(
        self,
        app: ASGIApp,
        *,
        port: int = 0,
        lifespan: Literal["on", "off", "auto"] = "on",
        startup_timeout: float = 10.0,
        graceful_shutdown_timeout: int = 3,
    ) -> LiveServer: ...


@pytest_asyncio.fixture
async def live_server() -> AsyncIterator[LiveServerFactory]:
    """`server = await live_server(app)` starts a `LiveServer`; all are stopped at teardown.

    The servers run on the test's event loop, so the fixture and the test must share one
    (pytest-asyncio's default).
    """
    servers: list[LiveServer] = []

    async def start(
        app: ASGIApp,
        *,
        port: int = 0,
        lifespan: Literal["on", "off", "auto"] = "on",
        startup_timeout: float = 10.0,
        graceful_shutdown_timeout: int = 3,
    ) -> LiveServer:
        server = LiveServer(
            app,
            port=port,
            lifespan=lifespan,
            startup_timeout=startup_timeout,
            graceful_shutdown_timeout=graceful_shutdown_timeout,
        )
        await server.start()
        servers.append(server)
        return server

    yield start

    errors: list[Exception] = []
    for server in reversed(servers):
        try:
            await server.stop()
        except Exception as exc:  # stop the others, then report
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("stopping live servers failed", errors)
