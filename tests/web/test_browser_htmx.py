"""Live pages in a real browser (Debian's Chromium driven by Playwright), under htmx 4 and htmx 2.

Two browser contexts open the same live page. Changes made through the repo, and through an
htmx form posted in one of them, appear in both without a reload. Then the server stops, the
database changes while it is down, and the server starts again on the same port: both pages
reconnect on their own and show the database's state, and keep following changes.

Also: htmx 4 takes the server's reconnection delay on a first connect; and (xfail, a bug) a
label shown as a `<ul>` and a `<tbody>` updates both.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import jinja2
import pytest
from data.models import Person, person
from fastapi import FastAPI, Form, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from fdbsync import testing
from fdbsync.data import Repo
from fdbsync.engine import Engine
from fdbsync.sync import LiveSession
from fdbsync.testing import LiveServer, serve
from fdbsync.web import LiveSync, live_sync

playwright_api = pytest.importorskip("playwright.async_api")
Page = playwright_api.Page
expect = playwright_api.expect

#: Server-side conditions have no event to await; these can take a while in a browser.
eventually = functools.partial(testing.eventually, within=15.0)


CHROMIUM = "/usr/bin/chromium"
STATIC = Path(__file__).resolve().parents[2] / "static"
#: How long a change may take to show in a page (normally well under a second).
SHOW_MS = 15_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"no Chromium at {CHROMIUM}: run `make browser` (installs Debian's chromium)",
    ),
]

HEAD = """<!doctype html>
<html><head><meta charset="utf-8"><title>people</title>{{ live.scripts() }}</head>
<body>
{{ live.stream() }}
"""
TEMPLATES = {
    # Lists and paragraphs: what every message of this page holds.
    "people.html": HEAD
    + """<form id="add" hx-post="/people" hx-swap="none">
  <input id="name" name="name" autocomplete="off"> <button id="add-button">Add</button>
</form>
{% block people %}<ul {{ live.target("people") }}>
{% for p in people %}<li>{{ p.name }}</li>{% endfor %}
</ul>{% endblock %}
{% block count %}<p {{ live.target("count") }}>{{ people | length }} people</p>{% endblock %}
{% block me %}<p {{ live.target("me") }}>{% if me %}<b>{{ me.name }}</b> <i>{{ me.age }}</i>{%
  else %}<b>gone</b> <i></i>{% endif %}</p>{% endblock %}
</body></html>
""",
    # A label shown as a `<ul>` and a `<tbody>`, and a record shown as a `<tr>`.
    "table.html": HEAD
    + """{% block people %}<ul {{ live.target("people") }}>
{% for p in people %}<li>{{ p.name }}</li>{% endfor %}
</ul>{% endblock %}
<table>
<thead><tr><th>Name</th><th>Age</th></tr></thead>
{% block rows %}<tbody {{ live.target("rows") }}>
{% for p in people %}<tr><td>{{ p.name }}</td><td>{{ p.age }}</td></tr>{% endfor %}
</tbody>{% endblock %}
</table>
<table><tbody>
<tr><td>first</td><td>never changes</td></tr>
{% block me %}<tr {{ live.target("me") }}>{% if me %}<td>{{ me.name }}</td><td>{{ me.age }}</td>{%
  else %}<td>gone</td><td></td>{% endif %}</tr>{% endblock %}
<tr><td>last</td><td>never changes</td></tr>
</tbody></table>
</body></html>
""",
}


def make_app(repo: Repo, htmx: int, me_id: str) -> tuple[FastAPI, LiveSync]:
    env = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True)
    live = LiveSync(
        repo,
        Jinja2Templates(env=env),
        htmx=htmx,  # type: ignore[arg-type]
        static_url="/static/vendor",
        reconnect_delay=0.25,
    )
    app = FastAPI(lifespan=live.lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/people")
    @live_sync("people.html", fragments={"people": ["people", "count"]})
    async def people(session: LiveSession) -> None:
        await session.sync_all("people", Person)
        await session.sync_one("me", Person, me_id)

    @app.get("/table")
    @live_sync("table.html", fragments={"people": ["people", "rows"]})
    async def table(session: LiveSession) -> None:
        await session.sync_all("people", Person)
        await session.sync_one("me", Person, me_id)

    @app.post("/people")
    async def add(name: Annotated[str, Form()]) -> Response:
        await repo.insert(person(name))
        return Response(status_code=204)

    return app, live


async def shows(
    pages: list[Page], *, people: list[str], absent: list[str], me: tuple[str, str]
) -> None:
    """Every page shows these people, not those, and `me` (name, age) — without a reload."""
    for page in pages:
        listed = page.locator("#fdbsync-people li")
        for name in people:
            await expect(listed.filter(has_text=name)).to_have_count(1, timeout=SHOW_MS)
        for name in absent:
            await expect(listed.filter(has_text=name)).to_have_count(0, timeout=SHOW_MS)
        await expect(listed).to_have_count(len(people), timeout=SHOW_MS)
        await expect(page.locator("#fdbsync-count")).to_have_text(
            f"{len(people)} people", timeout=SHOW_MS
        )
        await expect(page.locator("#fdbsync-me > *")).to_have_text(list(me), timeout=SHOW_MS)


@pytest.fixture
async def repo(engine: Engine) -> Repo:
    single = Repo(engine, models=[Person])
    await single.build_indexes(Person)
    return single


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.mark.parametrize("htmx", [4, 2])
async def test_two_browsers_follow_changes_and_recover_after_a_restart(
    repo: Repo, engine: Engine, browser: playwright_api.Browser, htmx: int
) -> None:
    ada = await repo.insert(person("ada", age=36))
    await repo.insert(person("bob", age=40))
    app, live = make_app(repo, htmx, ada.id)
    server = LiveServer(app)
    await server.start()
    errors: list[str] = []
    try:
        pages: list[Page] = []
        for _ in range(2):
            context = await browser.new_context()
            page = await context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{server.url}/people")
            await page.evaluate("window.notReloaded = true")
            pages.append(page)
        await shows(pages, people=["ada", "bob"], absent=[], me=("ada", "36"))
        await eventually(lambda: live.stats().streams == 2, "both pages connecting")

        # Changes through the repo.
        await repo.insert(person("grace"))
        await shows(pages, people=["ada", "bob", "grace"], absent=[], me=("ada", "36"))
        ada = await repo.update(ada, {"name": "ada lovelace", "age": 37})
        everyone = ["ada lovelace", "bob", "grace"]
        await shows(pages, people=everyone, absent=[], me=("ada lovelace", "37"))

        # A change through an htmx form in one page shows in both.
        await pages[0].fill("#name", "hopper")
        await pages[0].click("#add-button")
        everyone.append("hopper")
        await shows(pages, people=everyone, absent=[], me=("ada lovelace", "37"))

        # The server stops; the database changes meanwhile; the server starts again.
        await server.stop()
        assert live.stats().streams == 0
        await engine.open()  # the app's lifespan closed it
        bob = await repo.get_by(Person, {"email": "bob@example.com"})
        grace = await repo.get_by(Person, {"email": "grace@example.com"})
        assert bob is not None and grace is not None
        await repo.update(bob, {"name": "robert"})
        await repo.delete(grace)
        await repo.insert(person("katherine"))
        await repo.update(ada, {"age": 38})
        await server.start()

        everyone = ["ada lovelace", "robert", "hopper", "katherine"]
        await shows(pages, people=everyone, absent=["grace", "bob"], me=("ada lovelace", "38"))
        await eventually(lambda: live.stats().streams == 2, "both pages reconnecting")

        # And they keep following changes.
        await repo.delete(ada)
        await shows(pages, people=everyone[1:], absent=["ada"], me=("gone", ""))
        for page in pages:
            assert await page.evaluate("window.notReloaded") is True
        assert errors == []
    finally:
        await server.stop()


async def open_page(browser: Any, url: str) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(url)
    return page


@pytest.mark.parametrize("htmx", [4, 2])
async def test_tbody_and_tr_fragments_follow_changes(
    repo: Repo, browser: playwright_api.Browser, htmx: int
) -> None:
    ada = await repo.insert(person("ada", age=36))
    app, live = make_app(repo, htmx, ada.id)
    async with serve(app) as server:
        page = await open_page(browser, f"{server.url}/table")
        await eventually(lambda: live.stats().streams == 1, "the page connecting")
        await repo.insert(person("grace", age=1))
        # The label's `<ul>` is swapped...
        await expect(page.locator("#fdbsync-people li")).to_have_count(2, timeout=SHOW_MS)
        # ...and so must its `<tbody>` be, in the same message.
        rows = page.locator("#fdbsync-rows tr")
        await expect(rows).to_have_text(["ada36", "grace1"], timeout=3_000)
        await repo.update(ada, {"age": 37})
        cells = page.locator("table:last-of-type tbody > tr > td")
        await expect(cells).to_have_text(
            ["first", "never changes", "ada", "37", "last", "never changes"], timeout=3_000
        )


async def test_htmx4_takes_the_reconnect_delay_on_a_first_connect(
    repo: Repo, browser: playwright_api.Browser
) -> None:
    """A first connect has nothing to send (the page is current), yet its first event must
    carry data: hx-sse.js applies `retry` only from events with data or a name."""
    ada = await repo.insert(person("ada", age=36))
    app, live = make_app(repo, 4, ada.id)
    async with serve(app) as server:
        page = await open_page(browser, f"{server.url}/people")
        await eventually(lambda: live.stats().streams == 1, "the page connecting")
        # hx-sse.js keeps the delay in the connection's config (500 ms unless told; the app
        # says 250).
        await page.wait_for_function(
            """() => document.querySelector('[hx-sse\\\\:connect]')
                ?._htmx?.sse?.config?.reconnectDelay === 250""",
            timeout=3_000,
        )
