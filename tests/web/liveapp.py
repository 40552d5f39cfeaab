"""A small live app for the web tests, served by a real uvicorn through `fdbsync.testing`.

A multi-tenant Repo over a real SQLite file (tenants acme and globex), Jinja templates written
to the test's tmp_path, and `@live_sync` routes for each sync kind, the route plumbing and the
failure cases. The test writes through its own engine on the same file (as another process
would), so writes reach the server's watches the way production writes do, and the database
can change while the server is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.models import Person
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from fdbsync.data import Repo
from fdbsync.engine import Engine, create_engine
from fdbsync.sync import HubStats, LiveSession, hub_for
from fdbsync.testing import ClientStream, LiveClient, LiveServer, eventually, serve
from fdbsync.testing.markup import scan
from fdbsync.web import Fragment, LiveSync, LiveSyncError, live_sync
from fdbsync.web.wire import LIVE_PARAM

__all__ = [
    "ACME_KEY",
    "ALL_LABELS",
    "WITHIN_S",
    "LiveApp",
    "Seen",
    "dash_path",
    "dashboard_state",
    "first_event",
    "next_message_names",
    "people_in",
    "rows",
    "running",
]

#: How long something that must happen may take (it normally takes milliseconds).
WITHIN_S = 5.0

#: The labels of the dashboard page.
ALL_LABELS = {"one", "many", "everyone", "team"}

#: The keys that authorize each tenant (`?key=...`); tests revoke them.
ACME_KEY = "acme-key"
GLOBEX_KEY = "globex-key"

_ITEM = '<li data-id="{{ p.id }}" data-team="{{ p.team }}" data-age="{{ p.age }}">{{ p.name }}</li>'

TEMPLATES: dict[str, str] = {
    # Every sync kind on one page, a block per label.
    "dash.html": (
        "<!doctype html>\n<html><head><title>{{ title }}</title>{{ live.scripts() }}</head>\n"
        "<body>\n{{ live.stream() }}\n"
        '<h1 id="title">{{ title }}</h1>\n'
        '{% block one %}<div {{ live.target("one") }}>{% if one %}'
        '<p data-id="{{ one.id }}" data-team="{{ one.team }}" data-age="{{ one.age }}">'
        "{{ one.name }}</p>{% endif %}</div>{% endblock %}\n"
        '{% block many %}<ul {{ live.target("many") }}>'
        "{% for p in many %}" + _ITEM + "{% endfor %}</ul>{% endblock %}\n"
        '{% block everyone %}<ul {{ live.target("everyone") }}>'
        "{% for p in everyone %}" + _ITEM + "{% endfor %}</ul>{% endblock %}\n"
        '{% block team %}<ul {{ live.target("team") }}>'
        "{% for p in team %}" + _ITEM + "{% endfor %}</ul>{% endblock %}\n"
        "</body></html>\n"
    ),
    # One record: the page the watch-cap test opens many of.
    "item.html": (
        "<!doctype html>\n<html><head>{{ live.scripts() }}</head><body>{{ live.stream() }}\n"
        '{% block one %}<div {{ live.target("one") }}>{% if one %}'
        '<p data-id="{{ one.id }}" data-team="{{ one.team }}" data-age="{{ one.age }}">'
        "{{ one.name }}</p>{% endif %}</div>{% endblock %}\n"
        "</body></html>\n"
    ),
    # Labels mapped elsewhere by `fragments=`: another block, another template, a function,
    # and nothing.
    "mapped.html": (
        "<!doctype html>\n<html><head>{{ live.scripts() }}</head><body>{{ live.stream() }}\n"
        '{% block one_alt %}<section {{ live.target("one_alt") }}>{% if one %}'
        '<p data-id="{{ one.id }}" data-team="{{ one.team }}" data-age="{{ one.age }}">'
        "{{ one.name }}</p>{% endif %}</section>{% endblock %}\n"
        '{% include "count.html" %}\n'
        '<ol id="fdbsync-many"></ol>\n'
        '{% block team %}<ul {{ live.target("team") }}>'
        "{% for p in team %}" + _ITEM + "{% endfor %}</ul>{% endblock %}\n"
        "</body></html>\n"
    ),
    "count.html": '<b {{ live.target("everyone") }}>{{ everyone | length }}</b>',
    # A block whose element lacks `live.target(...)`.
    "notarget.html": (
        "<!doctype html>\n<html><body>{{ live.stream() }}\n"
        '{% block one %}<div class="one">{{ one.name if one else "" }}</div>{% endblock %}\n'
        "</body></html>\n"
    ),
}


def many_fragment(context: Mapping[str, Any]) -> str:
    """The `many` label of the mapped page, as a function: an ordered list of names."""
    items = Markup("").join(
        Markup('<li data-id="{}">{}</li>').format(p.id, p.name) for p in context["many"]
    )
    return str(Markup("<ol {}>{}</ol>").format(context["live"].target("many"), items))


@dataclass(frozen=True)
class Seen:
    """What one run of a route received."""

    route: str
    streaming: bool
    tenant: str
    query: dict[str, str]
    user: str


@dataclass
class LiveApp:
    """The app, its server and client, and the test's own handle on the same database."""

    app: FastAPI
    live: LiveSync
    engine: Engine  # the server's (opened and closed by the app's lifespan)
    writer: Engine  # the test's, on the same file
    acme: Repo  # tenant acme through the writer
    globex: Repo
    server: LiveServer
    client: LiveClient
    keys: dict[str, str]  # valid key -> tenant
    auth_calls: list[str] = field(default_factory=list)  # the tenant of each authorization
    seen: list[Seen] = field(default_factory=list)

    def hub(self) -> HubStats:
        """The server's hub (the server runs on the test's event loop)."""
        return hub_for(self.engine).stats()

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    async def set(self, pid: str, tenant: str = "acme", **changes: Any) -> Person:
        repo = self.acme if tenant == "acme" else self.globex
        found = await repo.get(Person, pid)
        assert found is not None, pid
        return await repo.update(found, changes)


def rows(people: list[Person] | Person | None) -> list[tuple[str, str, str, str]]:
    """People as the templates show them: (id, name, team, age)."""
    if people is None:
        return []
    if isinstance(people, Person):
        people = [people]
    return [(p.id, p.name, p.team, str(p.age)) for p in people]


def people_in(fragment: str) -> list[tuple[str, str, str, str]]:
    """The people a fragment shows (elements with data-id), as `rows` gives them."""
    found = []
    for element in scan(fragment):
        if "data-id" not in element.attrs:
            continue
        inner = re.sub(r"^<[^>]*>|</[^>]*>$", "", element.html)
        text = html.unescape(re.sub(r"<[^>]*>", "", inner))
        attrs = element.attrs
        found.append(
            (
                attrs["data-id"] or "",
                text,
                attrs.get("data-team") or "",
                attrs.get("data-age") or "",
            )
        )
    return found


async def first_event(stream: ClientStream) -> None:
    """Wait for the stream's first event: its first message, or the `retry` field the server
    sends when no fragment needs sending."""
    await eventually(lambda: stream.retry is not None or bool(stream.messages))


async def next_message_names(stream: ClientStream, after: int) -> set[str]:
    """The fragment names of the first message past the first `after` ones (waiting for it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_S
    while len(stream.messages) <= after:
        assert not stream.is_ended, f"the stream ended: {stream!r}"
        assert loop.time() < deadline, f"no message came: {stream!r}"
        await asyncio.sleep(0.005)
    return set(stream.messages[after].fragments)


async def dashboard_state(
    env: LiveApp, *, pid: str, ids: list[str], team: str
) -> dict[str, list[tuple[str, str, str, str]]]:
    """What each label of a dashboard page should show, read from the database now."""
    many = [p for p in await env.acme.get_many(Person, ids) if p is not None]
    return {
        "one": rows(await env.acme.get(Person, pid)),
        "many": rows(many),
        "everyone": rows(await env.acme.all(Person)),
        "team": rows(await env.acme.all_by(Person, {"team": team})),
    }


SEED = {
    "acme": [
        Person(id="ada", name="Ada", email="ada@acme.test", team="red", age=36),
        Person(id="bob", name="Bob", email="bob@acme.test", team="red", age=41),
        Person(id="cy", name="Cy", email="cy@acme.test", team="red", age=29),
        Person(id="dee", name="Dee", email="dee@acme.test", team="blue", age=52),
    ],
    "globex": [
        Person(id="ada", name="Ada of Globex", email="ada@globex.test", team="blue", age=60),
    ],
}


def build_app(
    tmp_path: Path, engine: Engine, app_state: dict[str, Any], **live_options: Any
) -> tuple[FastAPI, LiveSync]:
    templates_dir = tmp_path / "templates"
    templates_dir.mkdir(exist_ok=True)
    for name, source in TEMPLATES.items():
        (templates_dir / name).write_text(source)
    repo = Repo(engine, models=[Person], multi_tenant=True)
    live = LiveSync(repo, Jinja2Templates(directory=templates_dir), **live_options)
    app = FastAPI(lifespan=live.lifespan)
    keys: dict[str, str] = app_state["keys"]
    auth_calls: list[str] = app_state["auth_calls"]
    seen: list[Seen] = app_state["seen"]

    @app.exception_handler(LiveSyncError)
    async def live_sync_error(request: Request, error: Exception) -> Response:
        return PlainTextResponse(f"{type(error).__name__}: {error}", status_code=500)

    async def authorize(tenant: str, key: str = "") -> str:
        """The tenant, if `key` authorizes it (403 otherwise)."""
        auth_calls.append(tenant)
        if keys.get(key) != tenant:
            raise HTTPException(403, "not your tenant")
        return tenant

    async def current_user(x_user: str = Header("anonymous")) -> str:
        return x_user

    def note(route: str, request: Request, tenant: str, user: str) -> None:
        query = {k: v for k, v in request.query_params.items() if k != LIVE_PARAM}
        seen.append(Seen(route, LIVE_PARAM in request.query_params, tenant, query, user))

    @app.get("/t/{tenant}/dash")
    @live_sync("dash.html")
    async def dash(
        session: LiveSession,
        request: Request,
        account: str = Depends(authorize),
        user: str = Depends(current_user),
        pid: str = "ada",
        ids: str = "",
        team: str = "red",
        label: str = "",
        explode: bool = False,
    ) -> None:
        note("dash", request, account, user)
        session.private["tenant"] = account
        session.assigns["title"] = f"{account} {user} {label}".strip()
        await session.sync_one("one", Person, pid)
        await session.sync_many("many", Person, [i for i in ids.split(",") if i])
        await session.sync_all("everyone", Person)
        await session.sync_all_by("team", Person, {"team": team})
        if explode:

            def boom(session: LiveSession, old: dict[str, Any]) -> None:
                raise RuntimeError("this page's callback fails")

            session.attach_callback("boom", "handle_assigns", boom)

    # The same route, answering HEAD too (FastAPI's GET routes do not).
    app.add_api_route("/t/{tenant}/dash-or-head", dash, methods=["GET", "HEAD"])

    @app.get("/t/{tenant}/item/{pid}")
    @live_sync("item.html")
    async def item(session: LiveSession, pid: str, account: str = Depends(authorize)) -> None:
        session.private["tenant"] = account
        await session.sync_one("one", Person, pid)

    @app.get("/t/{tenant}/away")
    @live_sync("dash.html")
    async def away(
        session: LiveSession, request: Request, account: str = Depends(authorize)
    ) -> Response | None:
        note("away", request, account, "")
        session.private["tenant"] = account
        await session.sync_one("one", Person, "ada")  # then changes its mind
        return RedirectResponse(f"/t/{account}/dash?key={request.query_params['key']}", 303)

    @app.get("/t/{tenant}/mapped")
    @live_sync(
        "mapped.html",
        fragments={
            "one": "one_alt",
            "everyone": Fragment(template="count.html"),
            "many": many_fragment,
            "team": None,
        },
    )
    async def mapped(
        session: LiveSession, account: str = Depends(authorize), ids: str = ""
    ) -> None:
        session.private["tenant"] = account
        await session.sync_one("one", Person, "ada")
        await session.sync_many("many", Person, [i for i in ids.split(",") if i])
        await session.sync_all("everyone", Person)
        await session.sync_all_by("team", Person, {"team": "red"})

    @app.get("/broken/noblock")
    @live_sync("dash.html")
    async def no_block(session: LiveSession) -> None:
        session.private["tenant"] = "acme"
        await session.sync_one("ghost", Person, "ada")

    @app.get("/broken/notarget")
    @live_sync("notarget.html")
    async def no_target(session: LiveSession) -> None:
        session.private["tenant"] = "acme"
        await session.sync_one("one", Person, "ada")

    return app, live


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, *, engine_query: str = "", **live_options: Any
) -> AsyncIterator[LiveApp]:
    """The app served on 127.0.0.1, its database seeded, a client for it, and the test's own
    engine on the same file. `engine_query` adds options to the server's engine URL."""
    path = tmp_path / "live.db"
    writer = create_engine(f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}{engine_query}")
    async with writer:
        root = Repo(writer, models=[Person], multi_tenant=True)
        tenants = {}
        for name, people in SEED.items():
            tenants[name] = tenant = await root.tenants.create(name)
            await tenant.build_indexes(Person)
            await tenant.insert_all(people)
        state: dict[str, Any] = {
            "keys": {ACME_KEY: "acme", GLOBEX_KEY: "globex"},
            "auth_calls": [],
            "seen": [],
        }
        app, live = build_app(tmp_path, engine, state, **live_options)
        async with serve(app) as server, LiveClient(server.url, timeout=WITHIN_S) as client:
            yield LiveApp(
                app=app,
                live=live,
                engine=engine,
                writer=writer,
                acme=tenants["acme"],
                globex=tenants["globex"],
                server=server,
                client=client,
                keys=state["keys"],
                auth_calls=state["auth_calls"],
                seen=state["seen"],
            )


def dash_path(tenant: str = "acme", key: str = ACME_KEY, **query: str) -> str:
    """The path of a dashboard page."""
    params = "&".join(f"{k}={v}" for k, v in {"key": key, **query}.items())
    return f"/t/{tenant}/dash?{params}"


def escaped(text: str) -> str:
    return str(escape(text))
