"""An httpx client for live pages: fetch a page, open its stream, wait for fragments.

The client reads the stream as a browser's EventSource would and splits each unnamed
message into the fragments htmx would swap (see `fdbsync.web.wire`), so a test can say
"the next `count` fragment" or "once `people` lists Alice" instead of parsing bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from fdbsync.web.wire import LIVE_PARAM, check_name

from . import markup
from .sse import SSEMessage, SSEParser

__all__ = ["ClientStream", "LiveClient", "LivePage", "StreamEnded"]

_T = TypeVar("_T")


class StreamEnded(Exception):
    """The stream ended before what a test was waiting for arrived."""


class LivePage:
    """A fetched page: its HTML, its live fragments and the URL of its stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.url = str(response.url)
        self.status_code = response.status_code
        self.headers = response.headers
        self.html = response.text
        #: The page's `fdbsync-<name>` elements (at any depth): name -> outer HTML.
        self.fragments = markup.fragments(self.html)
        found = markup.stream_url(self.html)
        # Relative to the page, as the browser resolves it.
        self._stream_url = None if found is None else str(response.url.join(found))

    @property
    def is_live(self) -> bool:
        """Whether the page names a stream."""
        return self._stream_url is not None

    @property
    def stream_url(self) -> str:
        """The absolute URL in the page's `hx-sse:connect` or `sse-connect` attribute."""
        if self._stream_url is None:
            raise LookupError(
                f"{self.url} names no live stream: no element has an "
                f"{' or '.join(markup.STREAM_ATTRIBUTES)} attribute"
            )
        return self._stream_url

    def __repr__(self) -> str:
        return f"<LivePage {self.url} fragments={sorted(self.fragments)}>"


class ClientStream:
    """A page's stream as the client sees it, read by a background task into `messages` and
    `latest` (the server's side is `fdbsync.web.LiveStream`).

    Waits never miss what arrived before them: `next_fragment` keeps a cursor per fragment
    name, and `wait_for` looks at the latest fragment first.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.url = str(response.url)
        self.status_code = response.status_code
        self.headers = response.headers
        #: The body of a response that is not an event stream (e.g. a 403's), else None.
        self.body: str | None = None
        #: Every message received, in order.
        self.messages: list[SSEMessage] = []
        #: The latest fragment received for each name: name -> outer HTML.
        self.latest: dict[str, str] = {}
        #: Comment lines received: sse-starlette's pings.
        self.pings = 0
        #: The latest reconnection time the server set with a `retry` field (ms).
        self.retry: int | None = None
        #: The transport error that ended the stream, if it did not end cleanly.
        self.error: httpx.HTTPError | None = None
        self._response = response
        self._parser = SSEParser()
        self._cursors: dict[str, int] = {}
        self._ended = False
        self._failure: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None
        # Set on every change and replaced, so a waiter takes it before looking at the state
        # and cannot sleep through a change that happened in between.
        self._news = asyncio.Event()
        # The gate before each read from the socket: cleared while paused.
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def is_ended(self) -> bool:
        """Whether the stream has ended (or was never an event stream)."""
        return self._ended

    @property
    def is_event_stream(self) -> bool:
        content_type: str = self.headers.get("content-type", "")
        return content_type.startswith("text/event-stream")

    def pause(self) -> None:
        """Stop reading from the socket: the server's sends back up, as for a slow client."""
        self._flowing.clear()

    def resume(self) -> None:
        """Read from the socket again."""
        self._flowing.set()

    async def next_fragment(
        self,
        name: str,
        timeout: float = 5.0,  # noqa: ASYNC109 (its error says what did arrive instead)
    ) -> str:
        """The next fragment `name` this call has not returned before.

        The first call returns the first one the stream delivered, even if it arrived before
        the call; each call moves on by one. Raises `TimeoutError` (saying what did arrive)
        or `StreamEnded`.
        """
        check_name(name)
        since = self._cursors.get(name, 0)

        def found() -> str | None:
            for index in range(self._cursors.get(name, 0), len(self.messages)):
                html = self.messages[index].fragments.get(name)
                if html is not None:
                    self._cursors[name] = index + 1
                    return html
            self._cursors[name] = len(self.messages)
            return None

        def describe(when: str) -> str:
            return (
                f"no {name!r} fragment arrived {when} on {self.url}; since the last one "
                f"returned (or the start) the stream delivered {self._summary(since)}"
            )

        return await self._until(found, timeout, describe)

    async def wait_for(
        self,
        name: str,
        predicate: Callable[[str], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 (its error shows the latest fragment)
    ) -> str:
        """The first fragment `name` that satisfies `predicate`, starting with the latest one
        already received. Raises `TimeoutError` (showing the latest one) or `StreamEnded`."""
        check_name(name)
        latest = self.latest.get(name)
        if latest is not None and predicate(latest):
            return latest
        checked = len(self.messages)
        seen = 0

        def found() -> str | None:
            nonlocal checked, seen
            for message in self.messages[checked:]:
                html = message.fragments.get(name)
                if html is not None:
                    seen += 1
                    if predicate(html):
                        return html
            checked = len(self.messages)
            return None

        def describe(when: str) -> str:
            latest = self.latest.get(name)
            shown = "none" if latest is None else _excerpt(latest, 300)
            return (
                f"no {name!r} fragment satisfied {predicate!r} {when} on {self.url} "
                f"({seen} arrived meanwhile); the latest one: {shown}"
            )

        return await self._until(found, timeout, describe)

    async def ended(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 (its error says what the stream delivered)
    ) -> None:
        """Return once the server has ended the stream; `TimeoutError` if it has not."""

        def found() -> bool | None:
            return True if self._ended else None

        def describe(when: str) -> str:
            return f"{self.url} did not end {when}; it delivered {self._summary(0)}"

        await self._until(found, timeout, describe)

    async def _until(
        self,
        found: Callable[[], _T | None],
        seconds: float,
        describe: Callable[[str], str],
    ) -> _T:
        """Wait for `found()` to find something; `describe(when)` explains a failure."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    news = self._news
                    if self._failure is not None:
                        raise RuntimeError(f"reading {self.url} failed") from self._failure
                    result = found()
                    if result is not None:
                        return result
                    if self._ended:
                        how = f" with {self.error!r}" if self.error else ""
                        raise StreamEnded(describe(f"before the stream ended{how}"))
                    await news.wait()
        except TimeoutError:
            raise TimeoutError(describe(f"within {seconds:g} s")) from None

    def _summary(self, start: int) -> str:
        """E.g. "2 messages (fragments 'a', 'b'; named events 'x'), and 3 pings in all"."""
        messages = self.messages[start:]
        names = sorted({name for message in messages for name in message.fragments})
        events = sorted({message.event for message in messages if message.event != "message"})
        details = []
        if names:
            details.append(f"fragments {', '.join(map(repr, names))}")
        if events:
            details.append(f"named events {', '.join(map(repr, events))}")
        summary = _count(len(messages), "message")
        if details:
            summary += f" ({'; '.join(details)})"
        return f"{summary}, and {_count(self.pings, 'ping')} in all"

    def _notify(self) -> None:
        self._news.set()
        self._news = asyncio.Event()

    async def _open(self) -> None:
        if self.status_code == 200 and self.is_event_stream:
            self._reader = asyncio.create_task(self._read(), name=f"reading {self.url}")
        else:
            # Not a stream (a 403, or a page): keep the body for the test to look at.
            await self._response.aread()
            self.body = self._response.text
            self._ended = True

    async def _read(self) -> None:
        try:
            chunks = self._response.aiter_bytes()
            # aiter_bytes() is typed as an AsyncIterator, but it is an async generator.
            async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                while True:
                    await self._flowing.wait()
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    self._receive(self._parser.feed(chunk))
            self._receive(self._parser.end())
        except httpx.HTTPError as exc:  # e.g. the server dropped the connection mid-body
            self.error = exc
        except Exception as exc:  # a bug here must not look like a quiet stream
            self._failure = exc
        finally:
            self._ended = True
            self._notify()

    def _receive(self, messages: Sequence[SSEMessage]) -> None:
        for message in messages:
            if message.event == "message":
                fragments = markup.split_fragments(message.data)
                message = SSEMessage(
                    data=message.data,
                    event=message.event,
                    id=message.id,
                    retry=message.retry,
                    fragments=fragments,
                )
                self.latest.update(fragments)
            self.messages.append(message)
        self.pings = self._parser.comments
        self.retry = self._parser.retry
        self._notify()

    async def aclose(self) -> None:
        """Close the connection (the server sees the client go away)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader})
        await self._response.aclose()
        self._ended = True
        self._notify()

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        return f"<ClientStream {self.url} {self.status_code} {state} {self._summary(0)}>"


class LiveClient:
    """An `httpx.AsyncClient` for live pages; keyword arguments go to httpx.

    Cookies and headers are the client's, so a test can sign in through `http` and then
    open streams as that user.
    """

    def __init__(self, base_url: str | httpx.URL = "", **httpx_options: Any) -> None:
        #: The underlying httpx client, for everything else (forms, sign-in, ...).
        self.http = httpx.AsyncClient(base_url=base_url, **httpx_options)

    async def page(
        self, url: str | httpx.URL, *, headers: Mapping[str, str] | None = None
    ) -> LivePage:
        """GET a page; raises `httpx.HTTPStatusError` (with a body excerpt) unless 2xx."""
        response = await self.http.get(url, headers=headers)
        if not response.is_success:
            raise httpx.HTTPStatusError(
                f"GET {response.url} answered {response.status_code} "
                f"{response.reason_phrase}: {_excerpt(response.text, 500)}",
                request=response.request,
                response=response,
            )
        return LivePage(response)

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str | httpx.URL, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[ClientStream]:
        """Open a live stream (adding `fdbsync-live=1` if the URL has no such parameter).

        Any status is returned, not raised: look at `status_code` and `body`. Leaving the
        block closes the connection.
        """
        target = httpx.URL(url)
        if LIVE_PARAM not in target.params:
            target = target.copy_add_param(LIVE_PARAM, "1")
        timeout = self.http.timeout
        request = self.http.build_request(
            "GET",
            target,
            headers={"Accept": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})},
            # A stream may be quiet for as long as nothing changes.
            timeout=httpx.Timeout(
                connect=timeout.connect, read=None, write=timeout.write, pool=timeout.pool
            ),
        )
        response = await self.http.send(request, stream=True)
        live = ClientStream(response)
        try:
            await live._open()
            yield live
        finally:
            await live.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        await self.http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.http.__aexit__(exc_type, exc, traceback)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _excerpt(text: str, limit: int) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
