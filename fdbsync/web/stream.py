"""`LiveStream`: one page's live connection. It drives the page's session and turns the labels
that change into SSE messages of fragments (see wire.py).

Rendering waits for the response to ask for the next message. While a slow client keeps the
previous message in flight, news piles up in the session as a set of changed reads, so the
server never holds more than the one message being written, one fragment per name, however
slowly the client reads; what it sends next is the state at that moment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from sse_starlette import ServerSentEvent
from starlette.requests import Request

from ..sync.errors import SyncError
from ..sync.session import LiveSession

if TYPE_CHECKING:
    from .live import LiveSync
    from .route import LiveRoute

__all__ = ["LiveStream"]

logger = logging.getLogger("fdbsync.web")


class LiveStream:
    """A connected page: its session, request and route, and what its page shows."""

    def __init__(
        self, live: LiveSync, session: LiveSession, request: Request, route: LiveRoute
    ) -> None:
        self.live = live
        self.session = session
        self.request = request
        self.route = route
        #: fragment name -> digest of the HTML the page shows (from its render, on a first
        #: connect the server recognises, then from what this stream sent)
        self.shown: dict[str, str] = {}
        self.messages = 0  # messages handed to the response
        self.pending = 0  # fragments rendered and not yet written to the client
        self.max_pending = 0  # the most fragments ever pending at once
        self.end_reason: str | None = None
        self._deadline = asyncio.get_running_loop().time() + live.lifetime_for()
        # Open from the start, while the route still runs: end_streams() (a sign-out) must
        # reach a stream that has been authorized but has not sent anything yet.
        live.streams.add(self)

    def __repr__(self) -> str:
        return f"<LiveStream {self.request.url.path} {self.session!r}>"

    def end(self, reason: str = "ended by the server") -> None:
        """End this stream now (its client will reconnect, and authorize again)."""
        if self.end_reason is None:
            self.end_reason = reason
        self.session.close()

    def release(self) -> None:
        """Let go of everything: the session and its watches, and the place in `streams`."""
        self.session.close()
        self.live.streams.discard(self)

    async def events(self) -> AsyncIterator[ServerSentEvent | bytes]:
        """The stream's messages: first every fragment the page may not show, then the
        fragments of each change. Ends at the stream's lifetime, on `end()`, on shutdown, or
        on an error in this session (logged; the client reconnects)."""
        live = self.live
        updates = self.session.updates()
        # One timer for the stream's life: ending it closes the session, and updates() ends.
        lifetime = asyncio.get_running_loop().call_at(self._deadline, self.end, "lifetime")
        try:
            first = self._message(self.session.labels)
            retry = live.reconnect_ms()
            if first is not None or retry is not None:
                # Data even when empty: htmx 4 takes `retry` only from events it dispatches.
                yield ServerSentEvent(first or "", retry=retry)
                self._written()
            while True:
                try:
                    changed = await anext(updates)
                except StopAsyncIteration:
                    return
                if self.session.closed:  # closed by a callback (a sign-out, say)
                    self.end("the session was closed")
                    return
                since = self.session.news_since
                message = self._message(changed)
                if message is not None:
                    yield live.encoded(message)  # pages sent the same message share its bytes
                    self._written()
                    if since is not None:
                        live.note_push(asyncio.get_running_loop().time() - since)
        except SyncError as error:
            if self.end_reason is None:
                self.end_reason = f"error: {error}"
            logger.warning("live stream %s ended: %s", self.request.url.path, error)
        except Exception as error:
            if self.end_reason is None:
                self.end_reason = f"error: {error!r}"
            logger.exception("live stream %s ended by an error", self.request.url.path)
        finally:
            lifetime.cancel()
            await updates.aclose()
            self.release()

    def _written(self) -> None:
        """The response asked for the next message: the last one is written."""
        self.pending = 0

    def _message(self, labels: Iterable[str]) -> str | None:
        """The fragments of `labels` that differ from what the page shows, as one message."""
        parts: list[str] = []
        names: list[str] = []
        context = self.live.fragment_context(self.session, self.request, self.route)
        wanted = set(labels)
        known = self.session.labels
        # In the order the route synced its labels, so messages are alike from run to run.
        ordered = [label for label in known if label in wanted]
        ordered += sorted(wanted.difference(known))
        renderer = self.live.renderer
        for label in ordered:
            for fragment in self.route.fragments_for(label):
                rendered = renderer.rendered(fragment, label, self.route.template, context)
                if self.shown.get(rendered.name) == rendered.digest:
                    continue
                self.shown[rendered.name] = rendered.digest
                parts.append(rendered.partial)
                names.append(rendered.name)
        if not parts:
            return None
        self.messages += 1
        self.pending = len(parts)
        self.max_pending = max(self.max_pending, self.pending)
        self.live.note_message(len(parts))
        return "\n".join(parts)
