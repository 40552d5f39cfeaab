"""Edges of live streams against a real uvicorn (`fdbsync.testing`) over SQLite files in
tmp_path: the stream URL a page names, first connects across two workers, a stream ended while
its route still runs, context processors, FastAPI's injected Response and BackgroundTasks, a
client too slow for the send timeout, hubs of dropped engines, and test servers side by side."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from data.models import Person
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Request, Response
from fastapi.templating import Jinja2Templates

from fdbsync.data import Repo
from fdbsync.engine import create_engine
from fdbsync.sync import LiveSession, hub_for
from fdbsync.testing import LiveClient, LiveServer, eventually, serve
from fdbsync.testing.markup import scan
from fdbsync.web import LIVE_PARAM, LiveStream, LiveSync, live_sync

from .liveapp import WITHIN_S, first_event

PAGE = (
    "<!doctype html>\n<html><head>{{ live.scripts() }}</head><body>{{ live.stream() }}\n"
    '{% block one %}<p {{ live.target("one") }}>{{ one.name if one else "nobody" }}</p>'
    "{% endblock %}\n</body></html>\n"
)

PEOPLE = [
    Person(id="ada", name="Ada", email="ada@acme.test"),
    Person(id="100%41", name="The right one", email="right@acme.test"),
    Person(id="100A", name="Someone else", email="else@acme.test"),
]

Build = Callable[[FastAPI, LiveSync], None]


@dataclass
class Site:
    app: FastAPI
    live: LiveSync
    repo: Repo  # the test's, on the same file
    server: LiveServer
    client: LiveClient

    def hub_sessions(self) -> int:
        return hub_for(self.live.repo.engine).stats().sessions


def worker(
    path: Path, templates_dir: Path, build: Build, **options: Any
) -> tuple[FastAPI, LiveSync]:
    """One app over the SQLite file at `path`, with its own engine and LiveSync."""
    processors = options.pop("context_processors", None)
    templates = Jinja2Templates(directory=templates_dir, context_processors=processors)
    live = LiveSync(Repo(create_engine(f"sqlite:///{path}"), models=[Person]), templates, **options)
    app = FastAPI(lifespan=live.lifespan)
    build(app, live)
    return app, live


@contextlib.asynccontextmanager
async def seeded(tmp_path: Path, page: str = PAGE) -> AsyncIterator[tuple[Path, Path, Repo]]:
    """A seeded SQLite file and a templates directory; the test's own repo on the file."""
    path = tmp_path / "site.db"
    templates_dir = tmp_path / "templates"
    templates_dir.mkdir(exist_ok=True)
    (templates_dir / "page.html").write_text(page)
    async with create_engine(f"sqlite:///{path}") as writer:
        repo = Repo(writer, models=[Person])
        await repo.build_indexes(Person)
        await repo.insert_all(PEOPLE)
        yield path, templates_dir, repo


@contextlib.asynccontextmanager
async def site(
    tmp_path: Path, build: Build, *, page: str = PAGE, **options: Any
) -> AsyncIterator[Site]:
    """One app served on 127.0.0.1 and a client for it."""
    async with seeded(tmp_path, page) as (path, templates_dir, repo):
        app, live = worker(path, templates_dir, build, **options)
        async with serve(app) as server, LiveClient(server.url, timeout=WITHIN_S) as client:
            yield Site(app, live, repo, server, client)


def one_person(app: FastAPI, live: LiveSync) -> None:
    @app.get("/p")
    @live_sync("page.html")
    async def person(session: LiveSession, pid: str = "ada") -> None:
        await session.sync_one("one", Person, pid)


async def rename(repo: Repo, pid: str, name: str) -> None:
    found = await repo.get(Person, pid)
    assert found is not None, pid
    await repo.update(found, {"name": name})


def stream_attribute(html: str) -> str:
    """The stream URL exactly as the page writes it."""
    for element in scan(html):
        url = element.attrs.get("hx-sse:connect") or element.attrs.get("sse-connect")
        if url:
            return url
    raise AssertionError(f"no stream URL in {html[:300]!r}")


# -- the stream URL a page names -----------------------------------------------------------------


async def test_the_stream_url_keeps_the_percent_encoded_path(tmp_path: Path) -> None:
    seen: list[str] = []

    def build(app: FastAPI, live: LiveSync) -> None:
        @app.get("/item/{pid}")
        @live_sync("page.html")
        async def item(session: LiveSession, pid: str) -> None:
            seen.append(pid)
            await session.sync_one("one", Person, pid)

    async with site(tmp_path, build) as env:
        # %25 is "%": the record is 100%41, not 100A.
        page = await env.client.page("/item/100%2541")
        assert page.fragments["one"] == '<p id="fdbsync-one">The right one</p>'
        assert stream_attribute(page.html).startswith("/item/100%2541?")
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            assert seen == ["100%41", "100%41"]
            assert stream.messages == []  # the first connect skips what the page shows
            await rename(env.repo, "100%41", "Still the right one")
            one = await stream.next_fragment("one")
            assert one == '<p id="fdbsync-one">Still the right one</p>'
            assert "Someone else" not in stream.latest["one"]


async def test_the_stream_url_never_starts_with_two_slashes(tmp_path: Path) -> None:
    seen: list[str] = []

    def build(app: FastAPI, live: LiveSync) -> None:
        @app.get("/{rest:path}")
        @live_sync("page.html")
        async def anything(session: LiveSession, rest: str) -> None:
            seen.append(rest)
            await session.sync_one("one", Person, "ada")

    async with site(tmp_path, build) as env:
        for path in ("//evil.example/x", "/%2Fevil.example/x"):
            seen.clear()
            response = await env.client.http.get(env.server.url + path)
            assert response.status_code == 200
            url = stream_attribute(response.text)
            assert url.startswith("/") and not url.startswith("//"), url
            # Resolved as a browser does, it stays on this server, and streams this page.
            assert str(response.url.join(url)).startswith(env.server.url + "/")
            async with env.client.stream(response.url.join(url)) as stream:
                assert stream.status_code == 200
                await first_event(stream)
            assert len(seen) == 2 and seen[0] == seen[1], seen


# -- two workers on one database -----------------------------------------------------------------


async def test_a_reconnect_to_the_rendering_worker_after_a_first_connect_elsewhere(
    tmp_path: Path,
) -> None:
    """The page renders on worker 1; its first connect lands on worker 2, which pushes an
    update; the data goes back to what the page first showed; the reconnect (same URL, same
    token) lands on worker 1, which must not skip by the first render's digests."""
    async with seeded(tmp_path) as (path, templates_dir, repo):
        app1, live1 = worker(path, templates_dir, one_person)
        app2, live2 = worker(path, templates_dir, one_person)
        async with (
            serve(app1) as server1,
            serve(app2) as server2,
            LiveClient(server1.url, timeout=WITHIN_S) as client1,
            LiveClient(server2.url, timeout=WITHIN_S) as client2,
        ):
            page = await client1.page("/p")
            shown = page.fragments["one"]
            assert shown == '<p id="fdbsync-one">Ada</p>'
            stream_path = page.stream_url.removeprefix(server1.url)

            async with client2.stream(stream_path) as elsewhere:
                await first_event(elsewhere)
                await rename(repo, "ada", "Ada (updated)")
                shown = await elsewhere.wait_for("one", lambda html: "updated" in html)
                assert live2.end_streams(reason="a deploy") == 1
                await elsewhere.ended()

            await rename(repo, "ada", "Ada")  # back to what worker 1 rendered
            async with client1.stream(stream_path) as back:
                await first_event(back)
                assert back.messages, "worker 1 skipped the fragment the page no longer shows"
                shown = back.messages[0].fragments.get("one", shown)
            assert shown == '<p id="fdbsync-one">Ada</p>'
            await eventually(lambda: live1.stats().streams == live2.stats().streams == 0)


# -- a stream ended while its route runs ---------------------------------------------------------


async def test_end_streams_reaches_a_stream_whose_route_is_still_running(tmp_path: Path) -> None:
    in_route = asyncio.Event()
    proceed = asyncio.Event()

    def build(app: FastAPI, live: LiveSync) -> None:
        @app.get("/p")
        @live_sync("page.html")
        async def person(session: LiveSession, x_user: str = Header()) -> None:
            session.private["user"] = x_user  # authorized
            await session.sync_one("one", Person, "ada")
            in_route.set()
            await proceed.wait()  # more reads, a slow database...

    async with site(tmp_path, build) as env, contextlib.AsyncExitStack() as stack:
        stack.callback(proceed.set)  # never leave the route waiting
        opening = asyncio.create_task(
            stack.enter_async_context(env.client.stream("/p", headers={"X-User": "alice"}))
        )
        await asyncio.wait_for(in_route.wait(), WITHIN_S)
        assert env.live.stats().streams == 1
        # A sign-out, say: the stream is authorized but has not sent anything yet.
        ended = env.live.end_streams(lambda s: s.session.private.get("user") == "alice")
        assert ended == 1
        proceed.set()
        stream = await asyncio.wait_for(opening, WITHIN_S)
        assert stream.status_code in (200, 204), stream
        await stream.ended()
        await rename(env.repo, "ada", "after the sign-out")
        assert not any("one" in message.fragments for message in stream.messages)
        assert env.live.stats().streams == 0
        await eventually(lambda: env.hub_sessions() == 0)
        assert hub_for(env.live.repo.engine).stats().storage_watches == 0


# -- what reaches the fragments and the responses ------------------------------------------------

VIEWER_PAGE = (
    "<!doctype html>\n<html><body>{{ live.stream() }}\n"
    '{% block one %}<p {{ live.target("one") }}>{{ site_name }}: {{ one.name }} '
    "(for {{ viewer }})</p>{% endblock %}\n</body></html>\n"
)


def viewer(request: Request) -> dict[str, Any]:
    return {"viewer": request.headers.get("x-user", "anonymous")}


async def test_context_processors_reach_pushed_fragments(tmp_path: Path) -> None:
    processors = [lambda request: {"site_name": "ACME"}, viewer]
    async with site(tmp_path, one_person, page=VIEWER_PAGE, context_processors=processors) as env:
        alice_page = await env.client.page("/p", headers={"X-User": "alice"})
        assert alice_page.fragments["one"] == '<p id="fdbsync-one">ACME: Ada (for alice)</p>'
        async with (
            env.client.stream(alice_page.stream_url, headers={"X-User": "alice"}) as alice,
            env.client.stream("/p", headers={"X-User": "bob"}) as bob,
        ):
            # An unknown token: every fragment, rendered with the processors' values.
            first = await bob.next_fragment("one")
            assert first == '<p id="fdbsync-one">ACME: Ada (for bob)</p>'
            await first_event(alice)
            assert alice.messages == []  # the render it skipped was the same
            await rename(env.repo, "ada", "Ada L.")
            pushed = await alice.next_fragment("one")
            assert pushed == '<p id="fdbsync-one">ACME: Ada L. (for alice)</p>'
            pushed = await bob.next_fragment("one")
            assert pushed == '<p id="fdbsync-one">ACME: Ada L. (for bob)</p>'


async def test_injected_response_headers_cookies_and_background_tasks(tmp_path: Path) -> None:
    ran: list[str] = []

    def build(app: FastAPI, live: LiveSync) -> None:
        async def refresh_session(response: Response) -> str:  # a sliding session cookie
            response.set_cookie("session", "renewed")
            return "ada"

        @app.get("/p")
        @live_sync("page.html")
        async def person(
            session: LiveSession,
            request: Request,
            response: Response,
            tasks: BackgroundTasks,
            pid: str = Depends(refresh_session),
        ) -> None:
            response.headers["X-From-Route"] = "yes"
            kind = "stream" if LIVE_PARAM in request.query_params else "page"
            tasks.add_task(ran.append, kind)
            await session.sync_one("one", Person, pid)

    async with site(tmp_path, build) as env:
        response = await env.client.http.get("/p")
        assert response.status_code == 200
        assert response.headers["x-from-route"] == "yes"
        assert response.cookies.get("session") == "renewed"
        assert response.headers["content-type"].startswith("text/html")
        await eventually(lambda: ran == ["page"])

        async with env.client.stream("/p") as stream:
            assert stream.status_code == 200 and stream.is_event_stream
            assert stream.headers["x-from-route"] == "yes"
            assert "session=renewed" in stream.headers["set-cookie"]
            assert stream.headers.get_list("cache-control") == ["no-store"]
            await stream.next_fragment("one")
            assert env.live.end_streams() == 1
            await stream.ended()
        await eventually(lambda: ran == ["page", "stream"])


# -- a client too slow for the send timeout ------------------------------------------------------

BIG_PAGE = (
    "<!doctype html>\n<html><body>{{ live.stream() }}\n"
    '{% block one %}<pre {{ live.target("one") }}>{{ one.name }}{{ pad }}</pre>{% endblock %}\n'
    "</body></html>\n"
)


async def test_a_paused_client_is_let_go_at_the_send_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def build(app: FastAPI, live: LiveSync) -> None:
        @app.get("/p")
        @live_sync("page.html")
        async def person(session: LiveSession) -> None:
            session.assigns["pad"] = "x" * 1_000_000  # fills the socket buffers in a few
            await session.sync_one("one", Person, "ada")

    caplog.set_level(logging.INFO)
    big = {"page": BIG_PAGE, "send_timeout": 0.3, "ping_interval": 0}
    async with site(tmp_path, build, **big) as env, env.client.stream("/p") as stream:
        await stream.next_fragment("one")
        (server_side,) = env.live.streams
        assert isinstance(server_side, LiveStream)
        stream.pause()
        # Each change is one more big message, until the server's sends block for longer
        # than the send timeout.
        for n in range(200):
            if not env.live.streams:
                break
            messages = server_side.messages
            await rename(env.repo, "ada", f"Ada {n}")
            await eventually(lambda m=messages: server_side.messages > m or not env.live.streams)
        assert env.live.stats().streams == 0
        await eventually(lambda: server_side.end_reason is not None)
        assert "send_timeout" in str(server_side.end_reason)
        assert server_side.session.closed
        await eventually(lambda: env.hub_sessions() == 0)
        assert hub_for(env.live.repo.engine).stats().storage_watches == 0
        stream.resume()
        await stream.ended()
    # Let go quietly: logged, not raised as the app's error (with its traceback).
    logged = [r.getMessage() for r in caplog.records if r.name == "fdbsync.web"]
    assert any("send_timeout" in message for message in logged), logged
    raised = [r for r in caplog.records if r.exc_info]
    assert not raised, [r.getMessage() for r in raised]


# -- hubs and test servers -----------------------------------------------------------------------


async def test_hub_for_does_not_keep_a_dropped_engine_alive(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'dropped.db'}")
    async with engine:
        hub = hub_for(engine)
        assert hub_for(engine) is hub
        assert hub.engine is engine
    dropped = weakref.ref(engine)
    del engine, hub
    gc.collect()
    assert dropped() is None


def test_shutdown_grace_must_not_be_negative(tmp_path: Path) -> None:
    repo = Repo(create_engine(f"sqlite:///{tmp_path / 'unused.db'}"), models=[Person])
    templates = Jinja2Templates(directory=tmp_path)
    with pytest.raises(ValueError, match="shutdown_grace"):
        LiveSync(repo, templates, shutdown_grace=-1)
    assert LiveSync(repo, templates, shutdown_grace=0).shutdown_grace == 0


async def test_stopping_one_test_server_leaves_anothers_streams_alone(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        site(tmp_path / "a", one_person) as a,
        site(tmp_path / "b", one_person) as b,
    ):
        page_a = await a.client.page("/p")
        page_b = await b.client.page("/p")
        async with (
            a.client.stream(page_a.stream_url) as stream_a,
            b.client.stream(page_b.stream_url) as stream_b,
        ):
            await first_event(stream_a)
            await first_event(stream_b)
            await a.server.stop()
            await stream_a.ended()
            assert not stream_b.is_ended
            assert b.live.stats().streams == 1
            # B's stream is still live: a change reaches it.
            await rename(b.repo, "ada", "Ada of B")
            pushed = await stream_b.next_fragment("one")
            assert pushed == '<p id="fdbsync-one">Ada of B</p>'
            assert not stream_b.is_ended and b.live.stats().streams == 1
