"""The life of a live stream against a real uvicorn: a client leaving, the stream's lifetime
and re-authorization, an error in one session, the watch cap, and graceful shutdown of a real
`uvicorn` process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from data.models import Person

from fdbsync.testing import ClientStream, LiveClient, LivePage, eventually

from .liveapp import (
    ACME_KEY,
    ALL_LABELS,
    WITHIN_S,
    LiveApp,
    dash_path,
    dashboard_state,
    first_event,
    people_in,
    rows,
    running,
)


async def shows_database(
    env: LiveApp, page: LivePage, stream: ClientStream, *, pid: str, ids: list[str]
) -> None:
    """Wait until the page, as the stream's fragments have updated it, shows the database."""
    expected = await dashboard_state(env, pid=pid, ids=ids, team="red")

    def shown() -> dict[str, list]:
        fragments = {**page.fragments, **stream.latest}
        return {name: people_in(fragments[name]) for name in expected}

    try:
        await eventually(lambda: shown() == expected)
    except AssertionError:
        assert shown() == expected, stream
        raise


# -- a client that leaves ------------------------------------------------------------------------


async def test_a_client_leaving_releases_its_session_and_watches(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        staying = await env.client.page(dash_path(pid="dee", ids="dee", team="blue"))
        leaving = await env.client.page(dash_path(pid="ada", ids="bob,cy", team="red"))
        async with env.client.stream(staying.stream_url) as stays:
            await first_event(stays)
            alone = env.hub()
            assert (alone.sessions, alone.storage_watches) == (1, 3)  # dee, two counters

            async with env.client.stream(leaving.stream_url) as leaves:
                await first_event(leaves)
                both = env.hub()
                # ada, bob, cy and the red counter are new; the Person counter is shared.
                assert (both.sessions, both.storage_watches) == (2, 7)
                assert env.live.stats().streams == 2
            # Left: the server notices the closed connection and lets go at once.
            await eventually(lambda: env.hub().sessions == 1, within=2.0)
            await eventually(lambda: env.hub().storage_watches == 3, within=2.0)
            after = env.hub()
            assert (after.keys, after.reads, after.subscriptions) == (3, 3, 3)
            assert env.live.stats().streams == 1

            # The stream that stayed still follows its records.
            await env.set("dee", age=53)
            one = await stays.wait_for("one", lambda html: 'data-age="53"' in html)
            assert people_in(one) == rows(await env.acme.get(Person, "dee"))
        await eventually(lambda: env.hub().sessions == 0, within=2.0)
        assert env.hub().storage_watches == 0
        assert env.live.stats().streams == 0


async def test_a_head_request_for_the_stream_holds_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        path = dash_path(**{"fdbsync-live": "1"}).replace("/dash?", "/dash-or-head?")
        response = await env.client.http.head(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert [seen.streaming for seen in env.seen] == [True]
        await eventually(lambda: env.hub().sessions == 0)
        assert env.hub().storage_watches == 0
        assert env.live.stats().streams == 0


async def test_keep_alive_pings(tmp_path: Path) -> None:
    async with running(tmp_path, ping_interval=0.05) as env:
        page = await env.client.page(dash_path())
        async with env.client.stream(page.stream_url) as stream:
            await eventually(lambda: stream.pings >= 2)
            assert stream.messages == []


# -- stream lifetime -----------------------------------------------------------------------------


async def test_streams_end_at_their_lifetime_and_reconnects_authorize_again(
    tmp_path: Path,
) -> None:
    lifetime = 0.5
    async with running(tmp_path, stream_lifetime=lifetime, reconnect_delay=0.05) as env:
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="red"))
        assert env.auth_calls == ["acme"]
        loop = asyncio.get_running_loop()

        opened = loop.time()
        async with env.client.stream(page.stream_url) as stream:
            assert stream.status_code == 200
            assert env.auth_calls == ["acme", "acme"]
            await stream.ended(timeout=lifetime + WITHIN_S)
            lasted = loop.time() - opened
            assert stream.error is None  # ended by the server, cleanly
            assert stream.retry == 50  # the browser reconnects after reconnect_delay
        assert lifetime * 0.9 - 0.05 <= lasted < lifetime + 2.0
        await eventually(lambda: env.hub().sessions == 0)
        assert env.hub().storage_watches == 0

        # The reconnect (same URL, its token spent) runs the route's authorization again and
        # gets every fragment, the state the server cannot know the page shows.
        await env.set("bob", name="Robert")
        async with env.client.stream(page.stream_url) as stream:
            assert stream.status_code == 200
            assert env.auth_calls == ["acme"] * 3
            await shows_database(env, page, stream, pid="ada", ids=["bob"])
            assert set(stream.messages[0].fragments) == ALL_LABELS

            # Revoked while connected: the stream goes on until its lifetime ends...
            del env.keys[ACME_KEY]
            await stream.ended(timeout=lifetime + WITHIN_S)

        # ...and the reconnect is refused, with no data.
        async with env.client.stream(page.stream_url) as stream:
            assert stream.status_code == 403
            assert stream.body is not None
            assert not any(name in stream.body for name in ("Ada", "Robert", "Cy", "Dee"))
            assert stream.messages == []
        assert env.auth_calls == ["acme"] * 4
        assert env.hub().sessions == 0


async def test_end_streams_ends_chosen_streams_now(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        acme = await env.client.page(dash_path())
        async with (
            env.client.stream(acme.stream_url) as first,
            env.client.stream(acme.stream_url) as second,
        ):
            await first_event(first)
            await first_event(second)
            assert env.live.stats().streams == 2
            # A logout, say: revoke, then end the account's streams.
            del env.keys[ACME_KEY]
            assert env.live.end_streams(reason="logged out") == 2
            await first.ended()
            await second.ended()
            await eventually(lambda: env.hub().sessions == 0)
        async with env.client.stream(acme.stream_url) as again:
            assert again.status_code == 403


# -- an error in one session ---------------------------------------------------------------------


async def test_a_failing_callback_ends_only_its_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as env:
        failing = await env.client.page(dash_path(pid="ada", ids="bob", explode="true"))
        healthy = await env.client.page(dash_path(pid="ada", ids="bob"))
        with caplog.at_level(logging.WARNING, logger="fdbsync"):
            async with (
                env.client.stream(failing.stream_url) as fails,
                env.client.stream(healthy.stream_url) as lives,
            ):
                await first_event(fails)
                await first_event(lives)
                assert env.hub().sessions == 2

                await env.set("ada", age=40)
                await fails.ended()
                assert fails.error is None
                assert fails.messages == []  # the change it failed on was not sent
                await shows_database(env, healthy, lives, pid="ada", ids=["bob"])
                await eventually(lambda: env.hub().sessions == 1)
                assert not lives.is_ended

                # The failed page reconnects and is brought up to date.
                async with env.client.stream(failing.stream_url) as again:
                    assert again.status_code == 200
                    await shows_database(env, failing, again, pid="ada", ids=["bob"])
                    assert set(again.messages[0].fragments) == ALL_LABELS
                    assert env.hub().sessions == 2

                    # The healthy stream keeps receiving; the reconnected one fails again.
                    await env.set("bob", name="Robert")
                    await shows_database(env, healthy, lives, pid="ada", ids=["bob"])
                    await again.ended()
                assert not lives.is_ended
        failures = [r for r in caplog.records if r.name == "fdbsync.web"]
        assert len(failures) == 2
        assert all("callback 'boom' failed" in r.getMessage() for r in failures)


# -- the watch cap -------------------------------------------------------------------------------


async def test_503_with_retry_after_at_the_watch_cap_while_pages_render(tmp_path: Path) -> None:
    async with running(tmp_path, engine_query="?max_watches=3", retry_after=7) as env:
        pages = {
            pid: await env.client.page(f"/t/acme/item/{pid}?key={ACME_KEY}")
            for pid in ("ada", "bob", "cy", "dee")
        }
        async with contextlib.AsyncExitStack() as streams:
            ada = await streams.enter_async_context(env.client.stream(pages["ada"].stream_url))
            bob = await streams.enter_async_context(env.client.stream(pages["bob"].stream_url))
            async with env.client.stream(pages["cy"].stream_url) as cy:
                for stream in (ada, bob, cy):
                    assert stream.status_code == 200
                    await first_event(stream)
                assert env.hub().storage_watches == 3

                async with env.client.stream(pages["dee"].stream_url) as refused:
                    assert refused.status_code == 503
                    assert refused.headers["retry-after"] == "7"
                    assert refused.headers["cache-control"] == "no-store"
                    assert refused.body is not None and "Dee" not in refused.body
                stats = env.hub()
                assert (stats.sessions, stats.keys, stats.storage_watches) == (3, 3, 3)

                # Pages hold no watches: they still render.
                page = await env.client.page(f"/t/acme/item/dee?key={ACME_KEY}")
                assert people_in(page.fragments["one"]) == rows(await env.acme.get(Person, "dee"))
                dash = await env.client.http.get(dash_path())
                assert dash.status_code == 200
                # Streams already live keep working.
                await env.set("bob", age=1)
                await bob.wait_for("one", lambda html: 'data-age="1"' in html)
            await eventually(lambda: env.hub().storage_watches == 2)

            # A dashboard shares ada's watch and takes the Person counter's, then its team
            # counter would pass the cap: 503, and what its first labels took is let go.
            async with env.client.stream(dash_path(pid="ada")) as dash_stream:
                assert dash_stream.status_code == 503
            stats = env.hub()
            assert (stats.sessions, stats.keys, stats.storage_watches) == (2, 2, 2)

            # A watch is free again: the refused page connects (its render's token was
            # not spent on the 503, so it skips what the page shows) and goes live.
            async with env.client.stream(pages["dee"].stream_url) as dee:
                assert dee.status_code == 200
                await first_event(dee)
                assert dee.messages == []
                await env.set("dee", age=2)
                one = await dee.next_fragment("one")
                assert people_in(one) == rows(await env.acme.get(Person, "dee"))


# -- graceful shutdown ---------------------------------------------------------------------------


async def test_a_stopping_server_ends_its_streams_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path())
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            with caplog.at_level(logging.INFO):
                await env.server.stop()
            await stream.ended()
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert errors == []
            assert stream.error is None  # a complete response, not a dropped connection
        await env.server.start()  # for the harness to stop


# -- graceful shutdown of a real uvicorn ---------------------------------------------------------

APP_MODULE = '''
"""A live app for `uvicorn livemod:app`."""

import os

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates

from fdbsync.data import Model, Repo, SchemaMetadata
from fdbsync.engine import create_engine
from fdbsync.sync import LiveSession
from fdbsync.web import LiveSync, live_sync


class Note(Model, source="notes", indexes=[SchemaMetadata()]):
    id: str
    text: str


repo = Repo(create_engine(os.environ["LIVEMOD_DB"]), models=[Note])
live = LiveSync(repo, Jinja2Templates(directory=os.environ["LIVEMOD_TEMPLATES"]))
app = FastAPI(lifespan=live.lifespan)


@app.get("/notes")
@live_sync("notes.html")
async def notes(session: LiveSession) -> None:
    await session.sync_all("notes", Note)
'''

NOTES_TEMPLATE = (
    "<html><body>{{ live.stream() }}"
    '{% block notes %}<ul {{ live.target("notes") }}>'
    "{% for n in notes %}<li>{{ n.text }}</li>{% endfor %}</ul>{% endblock %}"
    "</body></html>"
)

GRACE_S = 5


@pytest.mark.slow
async def test_sigterm_ends_streams_and_exits_within_the_graceful_window(tmp_path: Path) -> None:
    (tmp_path / "livemod.py").write_text(APP_MODULE)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "notes.html").write_text(NOTES_TEMPLATE)
    env = {
        **os.environ,
        "LIVEMOD_DB": f"sqlite:///{tmp_path / 'notes.db'}",
        "LIVEMOD_TEMPLATES": str(tmp_path / "templates"),
    }
    uvicorn = Path(sys.executable).parent / "uvicorn"
    process = await asyncio.create_subprocess_exec(
        str(uvicorn),
        "livemod:app",
        "--app-dir",
        str(tmp_path),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--timeout-graceful-shutdown",
        str(GRACE_S),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stderr is not None
    log: list[str] = []
    try:
        port = None
        async with asyncio.timeout(20):
            while port is None:
                line = (await process.stderr.readline()).decode()
                assert line, f"uvicorn exited before listening: {''.join(log)}"
                log.append(line)
                found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
                port = int(found.group(1)) if found else None

        async def drain() -> None:
            assert process.stderr is not None
            async for line in process.stderr:
                log.append(line.decode())

        draining = asyncio.create_task(drain())
        loop = asyncio.get_running_loop()
        async with LiveClient(f"http://127.0.0.1:{port}", timeout=WITHIN_S) as client:
            page = await client.page("/notes")
            assert page.fragments["notes"] == '<ul id="fdbsync-notes"></ul>'
            # A reconnect-like URL, so the stream's first message shows it is live.
            async with client.stream("/notes") as stream:
                assert await stream.next_fragment("notes") == ('<ul id="fdbsync-notes"></ul>')
                signalled = loop.time()
                process.send_signal(signal.SIGTERM)
                await stream.ended(timeout=GRACE_S)
                stream_ended = loop.time() - signalled
            code = await asyncio.wait_for(process.wait(), GRACE_S)
            exited = loop.time() - signalled
        await draining
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = "".join(log)
    # uvicorn ends by raising the signal it caught again, once it has shut down.
    assert code in (0, -signal.SIGTERM), output
    # sse-starlette notices the exit within its 0.5 s poll; the rest is uvicorn and the
    # lifespan closing the engine. Well within the 5 s window, which would cancel the stream.
    assert stream_ended < 2.5, output
    assert exited < 3.0, output
    assert "Traceback" not in output
    assert "Application shutdown complete" in output
