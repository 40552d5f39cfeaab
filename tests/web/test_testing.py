"""fdbsync.testing: the live server, the SSE client, the fragment splitter and the plugin."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from fdbsync.testing import (
    LiveClient,
    LiveServerError,
    LiveServerFactory,
    StreamEnded,
    eventually,
    plugin,
    serve,
    split_fragments,
)
from fdbsync.testing.sse import SSEMessage, SSEParser
from fdbsync.web.wire import LIVE_PARAM

# Users enable the fixture with `pytest_plugins = ["fdbsync.testing"]` in a conftest (the
# subprocess test below does exactly that); binding it here instead keeps it from being
# registered for every module of this suite.
live_server = plugin.live_server


def oob(name: str, content: str, tag: str = "p") -> str:
    """A fragment as the live stream sends it."""
    return f'<{tag} id="fdbsync-{name}" hx-swap-oob="true">{content}</{tag}>'


class Feed:
    """What the test app streams on /live: every open stream gets each published item;
    None ends the streams."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[str | None]] = set()
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()

    def publish(self, item: str | None) -> None:
        for queue in self.queues:
            queue.put_nowait(item)


def make_app(feed: Feed) -> Starlette:
    """A tiny app speaking the wire format, with the awkward cases a live test meets."""

    async def page(request: Request) -> Response:
        return HTMLResponse(
            "<!doctype html><html><body>"
            '<main hx-ext="sse" sse-connect="/live?fdbsync-live=tok&amp;mode=full">'
            '<ul id="fdbsync-people"><li>Ann<li>Bob</ul>'
            '<section><p id="fdbsync-count">2</p></section>'
            "</main></body></html>"
        )

    async def page_htmx4(request: Request) -> Response:
        return HTMLResponse(
            '<body hx-sse:connect="live?fdbsync-live=t4"><div id="fdbsync-clock">1</div></body>'
        )

    async def plain(request: Request) -> Response:
        return HTMLResponse("<p>nothing live here</p>")

    async def missing(request: Request) -> Response:
        return PlainTextResponse("no such page " + "x" * 2000, status_code=404)

    async def live(request: Request) -> Response:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        feed.queues.add(queue)
        echo = f"{request.query_params.get(LIVE_PARAM)}|{request.headers.get('accept')}"

        async def messages() -> AsyncIterator[str]:
            try:
                yield oob("request", echo) + oob("count", "2")
                feed.opened.set()
                while (item := await queue.get()) is not None:
                    yield item
            finally:
                feed.queues.discard(queue)
                feed.closed.set()

        return EventSourceResponse(messages(), ping=0)

    async def private(request: Request) -> Response:
        if request.cookies.get("user") != "ann":
            return PlainTextResponse("sign in first", 403, headers={"x-reason": "anonymous"})
        return EventSourceResponse(iter([oob("hello", "Ann")]), ping=0)

    async def fields(request: Request) -> Response:
        pinged = asyncio.Semaphore(0)

        def ping() -> ServerSentEvent:
            pinged.release()
            return ServerSentEvent(comment="ping")

        async def messages() -> AsyncIterator[ServerSentEvent]:
            yield ServerSentEvent(data=oob("a", "1") + "\n" + oob("b", "2"), id="7")
            yield ServerSentEvent(data="line one\nline two")
            yield ServerSentEvent(data="not swapped", event="notice", retry=1500)
            # The third ping is built only after the second was sent: two pings precede
            # the last message.
            for _ in range(3):
                await pinged.acquire()
            yield ServerSentEvent(data=oob("done", "yes"))

        return EventSourceResponse(messages(), ping=0.1, ping_message_factory=ping)

    async def endless(request: Request) -> Response:
        async def messages() -> AsyncIterator[str]:
            yield oob("tick", "0")
            await asyncio.Event().wait()  # nothing ends this stream but the server
            yield oob("tick", "never")

        return EventSourceResponse(messages(), ping=0)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/v4/page", page_htmx4),
            Route("/plain", plain),
            Route("/missing", missing),
            Route("/live", live),
            Route("/v4/live", live),
            Route("/private", private),
            Route("/fields", fields),
            Route("/endless", endless),
        ]
    )


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
def app(feed: Feed) -> Starlette:
    return make_app(feed)


# Pages


async def test_page_finds_the_stream_url_and_fragments(
    live_server: LiveServerFactory, app: Starlette
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client:
        page = await client.page("/")
        v4 = await client.page("/v4/page")

    assert page.is_live
    # Unescaped (&amp;) and made absolute against the page.
    assert page.stream_url == f"{server.url}/live?fdbsync-live=tok&mode=full"
    assert page.fragments == {
        "people": '<ul id="fdbsync-people"><li>Ann<li>Bob</ul>',
        "count": '<p id="fdbsync-count">2</p>',
    }
    # htmx 4's attribute, relative to /v4/page.
    assert v4.stream_url == f"{server.url}/v4/live?fdbsync-live=t4"
    assert v4.fragments == {"clock": '<div id="fdbsync-clock">1</div>'}


async def test_page_errors_and_pages_without_a_stream(
    live_server: LiveServerFactory, app: Starlette
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client:
        with pytest.raises(httpx.HTTPStatusError) as raised:
            await client.page("/missing")
        plain = await client.page("/plain")

    message = str(raised.value)
    assert "404" in message and "no such page" in message
    assert len(message) < 700  # an excerpt, not the whole body
    assert raised.value.response.status_code == 404
    assert not plain.is_live and plain.fragments == {}
    with pytest.raises(LookupError, match="sse-connect"):
        _ = plain.stream_url


# Streams


async def test_next_fragment_returns_each_fragment_once_per_name(
    live_server: LiveServerFactory, app: Starlette, feed: Feed
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client:
        page = await client.page("/")
        async with client.stream(page.stream_url) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            # The first message may well have arrived already: it is not lost.
            await feed.opened.wait()
            feed.publish(oob("count", "3"))
            feed.publish(oob("people", "<li>Ann") + oob("count", "4"))

            assert await stream.next_fragment("count") == oob("count", "2")
            assert await stream.next_fragment("count") == oob("count", "3")
            assert await stream.next_fragment("count") == oob("count", "4")
            # Each name has its own cursor.
            assert await stream.next_fragment("people") == oob("people", "<li>Ann")
            assert await stream.next_fragment("request") == oob("request", "tok|text/event-stream")
            assert stream.latest == {
                "request": oob("request", "tok|text/event-stream"),
                "count": oob("count", "4"),
                "people": oob("people", "<li>Ann"),
            }
            assert [sorted(message.fragments) for message in stream.messages] == [
                ["count", "request"],
                ["count"],
                ["count", "people"],
            ]


async def test_stream_adds_the_live_parameter_when_missing(
    live_server: LiveServerFactory, app: Starlette
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client, client.stream("/live") as stream:
        assert await stream.next_fragment("request") == oob("request", "1|text/event-stream")
        assert f"{LIVE_PARAM}=1" in stream.url


async def test_sse_fields_pings_and_named_events(
    live_server: LiveServerFactory, app: Starlette
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client, client.stream("/fields") as stream:
        assert await stream.next_fragment("done") == oob("done", "yes")

    first, second, notice, done = stream.messages
    # Multi-line data is joined with "\n"; each line's fragment is found.
    assert first.data == oob("a", "1") + "\n" + oob("b", "2")
    assert first.fragments == {"a": oob("a", "1"), "b": oob("b", "2")}
    assert first.id == "7" and second.id == "7"  # the last event id carries over
    assert second.data == "line one\nline two" and second.fragments == {}
    # A named event is kept but is not a fragment message.
    assert (notice.event, notice.data, notice.retry, notice.fragments) == (
        "notice",
        "not swapped",
        1500,
        {},
    )
    assert stream.retry == 1500
    assert done.event == "message" and done.retry is None
    assert stream.pings >= 2


async def test_error_statuses_are_kept_for_the_test(
    live_server: LiveServerFactory, app: Starlette
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client, client.stream("/private") as stream:
        assert stream.status_code == 403
        assert stream.headers["x-reason"] == "anonymous"
        assert stream.body == "sign in first"
        await stream.ended(timeout=0.1)
        with pytest.raises(StreamEnded, match="'hello'"):
            await stream.next_fragment("hello")

    # A page where a stream was expected: a 200, but no stream to read.
    async with LiveClient(server.url) as client, client.stream("/plain") as stream:
        assert stream.status_code == 200 and not stream.is_event_stream
        assert stream.body == "<p>nothing live here</p>" and stream.is_ended

    # Cookies go with the client, so a test can sign in.
    async with (
        LiveClient(server.url, cookies={"user": "ann"}) as client,
        client.stream("/private") as stream,
    ):
        assert stream.status_code == 200 and stream.body is None
        assert await stream.next_fragment("hello") == oob("hello", "Ann")


async def test_a_stream_the_server_ends(
    live_server: LiveServerFactory, app: Starlette, feed: Feed
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client, client.stream("/live") as stream:
        await feed.opened.wait()
        feed.publish(None)
        await stream.ended()
        assert stream.is_ended and stream.error is None  # a clean end of the body
        with pytest.raises(StreamEnded, match="before the stream ended"):
            await stream.next_fragment("nothing")


async def test_leaving_the_block_disconnects(
    live_server: LiveServerFactory, app: Starlette, feed: Feed
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client:
        async with client.stream("/live") as stream:
            await stream.next_fragment("count")
            assert not feed.closed.is_set()
        assert stream.is_ended
        # The server notices the client went away and ends the response.
        await asyncio.wait_for(feed.closed.wait(), 5)


async def test_next_fragment_timeout_says_what_arrived(
    live_server: LiveServerFactory, app: Starlette, feed: Feed
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client, client.stream("/live") as stream:
        await feed.opened.wait()
        feed.publish(oob("people", "<li>Cy"))
        await stream.next_fragment("people")
        started = time.monotonic()
        with pytest.raises(TimeoutError) as raised:
            await stream.next_fragment("missing", timeout=0.2)

    assert 0.19 < time.monotonic() - started < 2
    message = str(raised.value)
    assert "'missing'" in message and "0.2 s" in message
    assert "2 messages (fragments 'count', 'people', 'request'), and 0 pings" in message


async def test_wait_for_checks_the_latest_then_new_fragments(
    live_server: LiveServerFactory, app: Starlette, feed: Feed
) -> None:
    server = await live_server(app)
    async with LiveClient(server.url) as client, client.stream("/live") as stream:
        await stream.next_fragment("count")
        # Already true of the latest one: no waiting.
        assert await stream.wait_for("count", lambda html: ">2<" in html) == oob("count", "2")

        waiting = asyncio.create_task(stream.wait_for("count", lambda html: ">5<" in html))
        await asyncio.sleep(0)  # it has looked at the latest one (2) and waits
        # Every arrival is checked: 5 is found even if 6 came in the same read.
        for count in range(3, 7):
            feed.publish(oob("count", str(count)))
        assert await waiting == oob("count", "5")

        with pytest.raises(TimeoutError) as raised:
            await stream.wait_for("count", lambda html: "99" in html, timeout=0.1)
    assert "'count'" in str(raised.value) and oob("count", "6") in str(raised.value)


async def test_pause_holds_the_server_back_until_resume(live_server: LiveServerFactory) -> None:
    size, limit = 200_000, 200  # 40 MB at most: more than the socket buffers hold
    sent = 0
    progressed = asyncio.Event()

    async def big(request: Request) -> Response:
        async def messages() -> AsyncIterator[str]:
            nonlocal sent
            for index in range(limit):
                yield oob("big", f"{index}:" + "x" * size, tag="pre")
                # The yield returned: the server has handed the message to the socket.
                sent += 1
                progressed.set()

        return EventSourceResponse(messages(), ping=0)

    async def stalled() -> bool:
        """Whether the server makes no progress for a while (its send blocks)."""
        progressed.clear()
        try:
            await asyncio.wait_for(progressed.wait(), 0.3)
        except TimeoutError:
            return True
        return False

    def index_of(html: str) -> int:
        return int(html.split(">", 1)[1].split(":", 1)[0])

    server = await live_server(Starlette(routes=[Route("/big", big)]))
    async with LiveClient(server.url) as client, client.stream("/big") as stream:
        await stream.next_fragment("big")
        stream.pause()
        received = len(stream.messages)
        while not await stalled():
            assert sent < limit, "the server sent everything although the client paused"
        blocked_at = sent
        # The client read at most the chunk it was reading when it paused.
        assert len(stream.messages) <= received + 1
        assert blocked_at < limit

        stream.resume()
        await asyncio.wait_for(progressed.wait(), 5)
        assert sent > blocked_at
        # What the server sent while the client paused arrives, whole and in order.
        await stream.wait_for("big", lambda html: index_of(html) >= blocked_at)
        indexes = [index_of(message.fragments["big"]) for message in stream.messages]
        assert indexes == list(range(len(indexes)))
        assert all(
            message.data == oob("big", f"{index}:" + "x" * size, tag="pre")
            for index, message in enumerate(stream.messages)
        )


# The server


async def test_stop_ends_open_streams_promptly(
    live_server: LiveServerFactory, app: Starlette
) -> None:
    server = await live_server(app, graceful_shutdown_timeout=5)
    async with LiveClient(server.url) as client, client.stream("/endless") as stream:
        await stream.next_fragment("tick")
        started = time.monotonic()
        await server.stop()
        # sse-starlette's watcher ended the stream: stop() did not wait out the backstop.
        assert time.monotonic() - started < 3
        await stream.ended(timeout=1)
    assert not server.running
    assert AppStatus.should_exit is False  # later servers' streams are not ended at once


async def test_restart_on_the_same_port(live_server: LiveServerFactory, app: Starlette) -> None:
    server = await live_server(app)
    url = server.url
    async with LiveClient(server.url) as client:
        async with client.stream("/endless") as stream:
            await stream.next_fragment("tick")
            await server.stop()
            await stream.ended()
        with pytest.raises(httpx.ConnectError):
            await client.page("/")

        await server.start()
        assert server.url == url
        page = await client.page("/")
        async with client.stream(page.stream_url) as stream:
            assert await stream.next_fragment("count") == oob("count", "2")
        # A stream opened after the restart is not ended by the last stop's flag.
        async with client.stream("/endless") as stream:
            await stream.next_fragment("tick")
            with pytest.raises(TimeoutError):
                await stream.ended(timeout=0.7)


async def test_a_failing_lifespan_fails_start_clearly() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    server = serve(Starlette(lifespan=lifespan))
    with pytest.raises(LiveServerError, match="did not start") as raised:
        await server.start()
    assert repr(RuntimeError("no database")) in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert not server.running
    # uvicorn's sys.exit() did not escape into the event loop: this test is still running.


async def test_a_failing_lifespan_shutdown_fails_stop() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        raise RuntimeError("could not flush")

    server = serve(Starlette(lifespan=lifespan))
    await server.start()
    with pytest.raises(LiveServerError, match="could not flush"):
        await server.stop()
    assert not server.running


async def test_a_stuck_startup_times_out() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.Event().wait()
        yield

    server = serve(Starlette(lifespan=lifespan), startup_timeout=0.2)
    with pytest.raises(TimeoutError, match=r"did not start within 0\.2 s"):
        await server.start()
    assert not server.running


async def test_servers_leave_signal_handlers_alone(
    live_server: LiveServerFactory, app: Starlette
) -> None:
    signals = (signal.SIGINT, signal.SIGTERM)
    before = [signal.getsignal(number) for number in signals]
    first = await live_server(app)
    second = await live_server(app)
    assert [signal.getsignal(number) for number in signals] == before
    # Stopped in the order they started: plain uvicorn would leave first's handler behind.
    await first.stop()
    await second.stop()
    assert [signal.getsignal(number) for number in signals] == before


async def test_serve_as_a_context_manager(app: Starlette) -> None:
    async with serve(app) as server:
        assert server.running and server.url == f"http://127.0.0.1:{server.port}"
        async with LiveClient(server.url) as client:
            assert (await client.page("/")).is_live
    assert not server.running


# The fragment splitter


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            '<p id="fdbsync-a">1</p>\n<p id="fdbsync-b">2</p>',
            {"a": '<p id="fdbsync-a">1</p>', "b": '<p id="fdbsync-b">2</p>'},
            id="siblings",
        ),
        pytest.param(
            '<div id="fdbsync-a"><div><div id="fdbsync-inner">x</div></div></div><i>y</i>',
            {"a": '<div id="fdbsync-a"><div><div id="fdbsync-inner">x</div></div></div>'},
            id="nested-same-tag",
        ),
        pytest.param(
            '<form id="fdbsync-f"><input value="a>b"><br><img src=x alt=\'<p>\'></form>'
            '<hr id="fdbsync-rule">',
            {
                "f": '<form id="fdbsync-f"><input value="a>b"><br><img src=x alt=\'<p>\'></form>',
                "rule": '<hr id="fdbsync-rule">',
            },
            id="void-elements-and-gt-in-attributes",
        ),
        pytest.param(
            '<tbody id="fdbsync-rows" hx-swap-oob="true"><tr><td>1<td>2<tr><td>3</tbody>'
            '<tr id="fdbsync-total"><td>6</td></tr>',
            {
                "rows": '<tbody id="fdbsync-rows" hx-swap-oob="true"><tr><td>1<td>2<tr><td>3'
                "</tbody>",
                "total": '<tr id="fdbsync-total"><td>6</td></tr>',
            },
            id="table-parts",
        ),
        pytest.param(
            'text &amp; <!-- <p id="fdbsync-no"> --><P ID="fdbsync-up">&lt;b&gt; &#x3e;</P>'
            '<script id="fdbsync-js">if (a < b && "</p>") {}</script>',
            {
                "up": '<P ID="fdbsync-up">&lt;b&gt; &#x3e;</P>',
                "js": '<script id="fdbsync-js">if (a < b && "</p>") {}</script>',
            },
            id="text-entities-comments-case-script",
        ),
        pytest.param(
            '<ul id="fdbsync-l"><li>a<li>b</ul><p id="fdbsync-p1">one<p id="fdbsync-p2">two',
            {
                "l": '<ul id="fdbsync-l"><li>a<li>b</ul>',
                "p1": '<p id="fdbsync-p1">one',
                "p2": '<p id="fdbsync-p2">two',
            },
            id="omitted-end-tags",
        ),
        pytest.param(
            '<svg id="fdbsync-icon"><path d="M0 0"/></svg></div><span id="other">x</span>'
            '<em id="fdbsync-e"\r\n class="x">\r\nmulti\nline</em>',
            {
                "icon": '<svg id="fdbsync-icon"><path d="M0 0"/></svg>',
                "e": '<em id="fdbsync-e"\r\n class="x">\r\nmulti\nline</em>',
            },
            id="self-closing-stray-end-tag-other-ids-and-line-ends",
        ),
    ],
)
def test_split_fragments(data: str, expected: dict[str, str]) -> None:
    assert split_fragments(data) == expected


def test_split_fragments_rejects_a_repeated_name() -> None:
    with pytest.raises(ValueError, match="fdbsync-a"):
        split_fragments('<p id="fdbsync-a">1</p><p id="fdbsync-a">2</p>')


# The SSE parser


def parse(*chunks: bytes) -> tuple[list[SSEMessage], SSEParser]:
    parser = SSEParser()
    messages = [message for chunk in chunks for message in parser.feed(chunk)]
    return [*messages, *parser.end()], parser


def test_sse_line_ends_and_split_chunks() -> None:
    stream = b"data: a\r\n\r\ndata: b\rdata: c\r\rdata:d\n\n: ping\n\n"
    whole, parser = parse(stream)
    assert [message.data for message in whole] == ["a", "b\nc", "d"]
    assert parser.comments == 1
    # Split anywhere, even between CR and LF or inside a UTF-8 character, it is the same.
    text = "data: é\r\n\r\n".encode() * 2
    for cut in range(1, len(text)):
        messages, _ = parse(text[:cut], text[cut:])
        assert [message.data for message in messages] == ["é", "é"], cut


def test_sse_fields() -> None:
    messages, parser = parse(
        b"\xef\xbb\xbfdata:no space\ndata:  two spaces\nid: 1\n\n"
        b"event: named\ndata\nretry: 10x\nunknown: field\n\n"
        b"id: a\x00b\nretry: 250\ndata: last\n\n"
        b"retry: 300\n\n"
        b"data: unterminated\n"
    )
    assert messages == [
        SSEMessage(data="no space\n two spaces", id="1"),
        # "event: named" with one empty data line: an empty data buffer, not dispatched
        SSEMessage(data="last", id="1", retry=250),  # an id with NUL is ignored
    ]
    assert parser.retry == 300  # set without a message; the unterminated one is dropped


# The plugin


def test_the_plugin_from_a_conftest(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "conftest.py").write_text(
        'from fdbsync.testing import LiveClient\n\npytest_plugins = ["fdbsync.testing"]\n'
    )
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            from starlette.applications import Starlette
            from starlette.responses import PlainTextResponse
            from starlette.routing import Route

            from fdbsync.testing import LiveClient, LiveServerFactory

            async def hello(request):
                return PlainTextResponse("hello")

            app = Starlette(routes=[Route("/", hello)])
            started = []

            async def test_serves(live_server: LiveServerFactory) -> None:
                first = await live_server(app)
                second = await live_server(app)
                assert first.port != second.port
                async with LiveClient(second.url) as client:
                    assert (await client.http.get("/")).text == "hello"
                started.extend([first, second])

            def test_stopped_at_teardown() -> None:
                assert len(started) == 2
                assert not any(server.running for server in started)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed" in output and "warning" not in output.lower(), output


def test_importing_fdbsync_does_not_import_pytest() -> None:
    code = "import sys, fdbsync, fdbsync.web.wire; print('pytest' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


async def test_eventually_waits_for_the_condition_and_names_it_on_timeout() -> None:
    loop = asyncio.get_running_loop()
    flag: list[bool] = []
    loop.call_later(0.05, flag.append, True)
    await eventually(lambda: bool(flag), "the flag")
    assert flag == [True]
    with pytest.raises(AssertionError, match=r"the never-set flag did not happen within 0\.1 s"):
        await eventually(lambda: False, "the never-set flag", within=0.1)
