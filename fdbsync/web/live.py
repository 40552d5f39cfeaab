"""`LiveSync`: an app's live set-up (repo, templates, htmx version, stream settings), its
lifespan, its open streams and what they have done."""

from __future__ import annotations

import functools
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from sse_starlette import ServerSentEvent
from starlette.requests import Request

from ..data.keyspace import outside_tenants
from ..data.repo import Repo
from ..engine import Transaction
from ..sync.session import LiveSession
from .context import HtmxVersion, LiveContext
from .errors import LiveSyncError
from .fragments import FragmentRenderer

if TYPE_CHECKING:
    from .route import LiveRoute
    from .stream import LiveStream

__all__ = ["LiveStats", "LiveSync", "live_of"]


@dataclass(frozen=True)
class LiveStats:
    """What an app's live streams hold and have done, for tests and metrics."""

    streams: int  # open live streams
    messages: int  # messages sent, since start
    pushes: int  # messages sent because data changed (not on connect)
    fragments: int  # fragments sent, since start
    renders: int  # fragments rendered
    shared_renders: int  # fragments served from an equal render for another page


class LiveSync:
    """The live set-up of one FastAPI app.

    `FastAPI(lifespan=live.lifespan)` (or `async with live.lifespan(app):` inside your own)
    opens the repo's engine when the app starts and, when it stops, ends every live stream
    and closes the engine. Routes decorated with `@live_sync` find it on `app.state`.

    Streams send a keep-alive comment every `ping_interval` seconds, give up on a client
    that takes longer than `send_timeout` to accept a message, and end after
    `stream_lifetime` seconds (give or take a tenth, so pages do not reconnect in step);
    the browser reconnects after `reconnect_delay` and the route authorizes it again. When
    the engine refuses more watches, new streams get 503 with `Retry-After: retry_after`.
    When the server starts to stop, streams end (completing their responses) within
    `shutdown_grace` seconds; keep it below the server's graceful-shutdown timeout.
    """

    def __init__(
        self,
        repo: Repo,
        templates: Jinja2Templates,
        *,
        htmx: HtmxVersion | Callable[[Request], HtmxVersion] = 4,
        static_url: str = "/static/vendor",
        ping_interval: float = 15.0,
        send_timeout: float = 30.0,
        stream_lifetime: float = 900.0,
        reconnect_delay: float | None = 1.0,
        retry_after: int = 5,
        first_render_ttl: float = 60.0,
        render_cache_size: int = 1024,
        shutdown_grace: float = 2.0,
    ) -> None:
        if stream_lifetime <= 0 or send_timeout <= 0 or ping_interval < 0 or shutdown_grace < 0:
            raise ValueError(
                "stream_lifetime and send_timeout must be positive; ping_interval and "
                "shutdown_grace at least 0"
            )
        self.repo = repo
        self.templates = templates
        self.htmx = htmx
        self.static_url = static_url
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.stream_lifetime = stream_lifetime
        self.reconnect_delay = reconnect_delay
        self.retry_after = retry_after
        self.shutdown_grace = shutdown_grace
        self.renderer = FragmentRenderer(templates.env, render_cache_size)
        self.streams: set[LiveStream] = set()
        self._first_renders = _FirstRenders(first_render_ttl)
        self._stream_contexts: dict[int, LiveContext] = {}
        self._encoded: dict[str, bytes] = {}
        self._messages = 0
        self._fragments = 0
        self._pushes = 0
        #: Called with each push's latency in seconds: from the storage watch firing to the
        #: message being written to the client (a metrics histogram's `observe`, say).
        self.push_observers: list[Callable[[float], None]] = []

    # -- the app's lifespan ------------------------------------------------------------------

    def install(self, app: FastAPI) -> None:
        """Make this the set-up `@live_sync` routes of `app` use (the lifespan does it)."""
        app.state.fdbsync = self

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Open the engine for the app's life; at the end, end every stream, then close."""
        self.install(app)
        async with self.repo.engine:
            try:
                yield
            finally:
                self.end_streams(reason="the server is stopping")
                self.renderer.clear()

    def end_streams(
        self,
        where: Callable[[LiveStream], bool] | None = None,
        *,
        reason: str = "ended by the server",
    ) -> int:
        """End the open streams `where(stream)` holds for (all by default), for example an
        account's streams at logout; their pages reconnect and authorize again. How many."""
        ended = [stream for stream in list(self.streams) if where is None or where(stream)]
        for stream in ended:
            stream.end(reason)
        return len(ended)

    def stats(self) -> LiveStats:
        return LiveStats(
            streams=len(self.streams),
            messages=self._messages,
            pushes=self._pushes,
            fragments=self._fragments,
            renders=self.renderer.renders,
            shared_renders=self.renderer.shared,
        )

    # -- for routes and streams --------------------------------------------------------------

    def htmx_for(self, request: Request, route: LiveRoute) -> HtmxVersion:
        if route.htmx is not None:
            return route.htmx
        return self.htmx(request) if callable(self.htmx) else self.htmx

    def page_context(self, request: Request, route: LiveRoute, stream_url: str) -> LiveContext:
        return LiveContext(self.htmx_for(request, route), self.static_url, stream_url)

    def fragment_context(
        self, session: LiveSession, request: Request, route: LiveRoute
    ) -> dict[str, Any]:
        """What a fragment renders with: the session's assigns, `live` and `request`. The
        `live` of fragments is one object per htmx version, so it never tells two equal
        renders apart."""
        version = self.htmx_for(request, route)
        live = self._stream_contexts.get(version)
        if live is None:
            live = self._stream_contexts[version] = LiveContext(version, self.static_url, None)
        context: dict[str, Any] = {**session.assigns, "live": live, "request": request}
        for processor in self.templates.context_processors:  # as TemplateResponse does
            context.update(processor(request))
        return context

    def remember_render(self, shown: Mapping[str, str]) -> str:
        """A one-use token for a page's first connect, standing for what the page shows."""
        return self._first_renders.put(dict(shown))

    async def recall_render(self, token: str) -> dict[str, str]:
        """What the page with `token` shows, if this is its first connect; otherwise nothing.

        This server remembers what it rendered, and forgets it at the first connect here.
        A connect to another worker (or machine) cannot reach that memory, so it records
        in the database that the page has connected; the rendering server checks that
        record before skipping anything, since the page may since have been updated by a
        stream elsewhere."""
        rendered_at = _FirstRenders.rendered_at(token)
        if rendered_at is None:
            return {}
        shown = self._first_renders.take(token)
        key = outside_tenants(*_CONNECTED, int(rendered_at) // 60, token)
        if shown:
            connected = await self.repo.engine.transact(lambda tr: tr.get(key))
            return {} if connected is not None else shown
        if time.time() - rendered_at < self._first_renders.ttl + _CLOCK_SKEW:
            await self.repo.engine.transact(functools.partial(_mark_connected, key))
        return {}

    def lifetime_for(self) -> float:
        return self.stream_lifetime * random.uniform(0.9, 1.0)

    def reconnect_ms(self) -> int | None:
        return None if self.reconnect_delay is None else int(self.reconnect_delay * 1000)

    def encoded(self, message: str) -> bytes:
        """`message` as SSE bytes, encoded once for every stream that sends it."""
        found = self._encoded.get(message)
        if found is None:
            found = self._encoded[message] = ServerSentEvent(message).encode()
            if len(self._encoded) > 64:
                del self._encoded[next(iter(self._encoded))]
        return found

    def note_message(self, fragments: int) -> None:
        self._messages += 1
        self._fragments += fragments

    def note_push(self, latency: float) -> None:
        self._pushes += 1
        for observe in self.push_observers:
            observe(latency)


def live_of(request: Request) -> LiveSync:
    """The LiveSync installed on the request's app."""
    live = getattr(request.app.state, "fdbsync", None)
    if not isinstance(live, LiveSync):
        raise LiveSyncError(
            "this app has no LiveSync: create one with LiveSync(repo, templates) and pass "
            "FastAPI(lifespan=live.lifespan), or call live.install(app)"
        )
    return live


#: Where workers record that a page rendered elsewhere has connected: (None, "web", ...) is
#: outside every tenant's keyspace (see docs/keyspace.md). Keys are grouped by the minute of
#: the render, and minutes long past are cleared as new records are written.
_CONNECTED = ("web", "connected")
#: How far apart the clocks of two machines may be for the records to still work.
_CLOCK_SKEW = 300.0


async def _mark_connected(key: bytes, tr: Transaction) -> None:
    tr.set(key, b"")
    stale = int(time.time() - _CLOCK_SKEW - 3600) // 60
    tr.clear_range(outside_tenants(*_CONNECTED), outside_tenants(*_CONNECTED, stale))


class _FirstRenders:
    """Pages rendered here whose stream has not connected yet: token -> what they show.

    A token is taken once, so only the first connect skips fragments; a reconnect (or a
    connect to another server, or after a restart) finds nothing and gets every fragment.
    """

    def __init__(self, ttl: float, capacity: int = 100_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._pages: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def put(self, shown: dict[str, str]) -> str:
        now = time.monotonic()
        while self._pages:
            token, (expires, _) = next(iter(self._pages.items()))
            if expires > now and len(self._pages) < self.capacity:
                break
            del self._pages[token]
        token = f"{int(time.time())}.{secrets.token_urlsafe(12)}"  # when, for other workers
        self._pages[token] = (now + self.ttl, shown)
        return token

    @staticmethod
    def rendered_at(token: str) -> float | None:
        """When the page with `token` was rendered (wall clock), if it is a render token."""
        when, _, rest = token.partition(".")
        return float(when) if when.isdigit() and rest else None

    def take(self, token: str) -> dict[str, str]:
        found = self._pages.pop(token, None)
        if found is None or found[0] <= time.monotonic():
            return {}
        return found[1]
