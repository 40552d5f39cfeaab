"""Tenant isolation of live pages and their streams, against edited URLs, headers and cookies.

A multi-tenant app signs accounts in with a signed session cookie (Starlette's
SessionMiddleware, itsdangerous); each account belongs to one tenant. The live route checks
the tenant in its path against the signed-in account and only then sets
`session.private["tenant"]`. The stream is the same route with the `fdbsync-live` parameter,
so every attempt is made against the page and against its stream, and none may yield another
tenant's data, open a stream or arm a watch.
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import httpx
import itsdangerous
import jinja2
import pytest
from data.models import Person, person
from fastapi import Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from fdbsync.data import Repo
from fdbsync.engine import Engine
from fdbsync.sync import LiveSession, hub_for
from fdbsync.testing import LiveClient, LiveServer, serve
from fdbsync.web import LIVE_PARAM, LiveSync, live_sync

SECRET = "the-test-app-secret"
ACCOUNTS = {"alice": "acme", "bob": "globex"}
#: What each tenant's pages show; none of it may reach the other tenant's account.
ACME_DATA = ("acme-ann", "acme-art", "ann@acme.test", "art@acme.test")
GLOBEX_DATA = ("globex-gus", "gus@globex.test")

PAGE = """<!doctype html>
<html><head><title>people</title>{{ live.scripts() }}</head>
<body>
{{ live.stream() }}
{% block people %}<ul {{ live.target("people") }}>
{% for p in people %}<li>{{ p.name }} &lt;{{ p.email }}&gt;</li>{% endfor %}
</ul>{% endblock %}
{% block count %}<p {{ live.target("count") }}>{{ people | length }} people</p>{% endblock %}
</body></html>
"""


def current_account(request: Request) -> str:
    """The signed-in account; 401 without a valid signed cookie."""
    account = request.session.get("account")
    if account not in ACCOUNTS:
        raise HTTPException(401, "sign in first")
    return str(account)


def make_app(root: Repo) -> tuple[FastAPI, LiveSync]:
    env = jinja2.Environment(loader=jinja2.DictLoader({"people.html": PAGE}), autoescape=True)
    live = LiveSync(root, Jinja2Templates(env=env), htmx=4)
    app = FastAPI(lifespan=live.lifespan)
    app.add_middleware(SessionMiddleware, secret_key=SECRET)

    @app.post("/login")
    async def login(request: Request, account: Annotated[str, Form()]) -> Response:
        if account not in ACCOUNTS:
            raise HTTPException(401, "no such account")
        request.session["account"] = account
        return Response(status_code=204)

    @app.get("/t/{tenant}/people")
    @live_sync("people.html", fragments={"people": ["people", "count"]})
    async def people(
        tenant: str,
        session: LiveSession,
        account: Annotated[str, Depends(current_account)],
    ) -> None:
        # Only the path and the signed session decide the tenant; headers such as X-Tenant
        # are not looked at.
        if ACCOUNTS[account] != tenant:
            raise HTTPException(403, "not your tenant")
        session.private["tenant"] = tenant
        await session.sync_all("people", Person)

    return app, live


@dataclass
class Setup:
    server: LiveServer
    live: LiveSync
    engine: Engine
    acme: Repo
    globex: Repo
    cookies: dict[str, str]  # account -> its signed session cookie value

    @property
    def url(self) -> str:
        return self.server.url

    def no_streams_or_watches(self) -> None:
        assert self.live.stats().streams == 0
        stats = hub_for(self.engine).stats()
        assert (stats.storage_watches, stats.sessions, stats.keys) == (0, 0, 0), stats


@pytest.fixture
async def setup(engine: Engine) -> AsyncIterator[Setup]:
    root = Repo(engine, models=[Person], multi_tenant=True)
    tenants = {}
    for name in ("acme", "globex"):
        tenants[name] = await root.tenants.create(name)
        await tenants[name].build_indexes(Person)
    await tenants["acme"].insert(Person(name="acme-ann", email="ann@acme.test"))
    await tenants["acme"].insert(Person(name="acme-art", email="art@acme.test"))
    await tenants["globex"].insert(Person(name="globex-gus", email="gus@globex.test"))
    app, live = make_app(root)
    async with serve(app) as server:
        cookies = {}
        async with httpx.AsyncClient(base_url=server.url) as http:
            for account in ACCOUNTS:
                response = await http.post("/login", data={"account": account})
                assert response.status_code == 204
                cookies[account] = response.cookies["session"]
                http.cookies.clear()
        yield Setup(server, live, engine, tenants["acme"], tenants["globex"], cookies)


def client(setup: Setup, cookie: str | None) -> LiveClient:
    """A client whose every request carries exactly this session cookie (or none)."""
    headers = {} if cookie is None else {"Cookie": f"session={cookie}"}
    return LiveClient(setup.url, headers=headers)


def leaks(text: str, data: tuple[str, ...]) -> list[str]:
    return [value for value in data if value in text]


async def assert_refused(
    live: LiveClient, path: str, *, headers: dict[str, str] | None = None, token: str = "1"
) -> None:
    """The page and its stream (with `token`) answer 401 or 403 and show no acme data."""
    page = await live.http.get(path, headers=headers)
    assert page.status_code in (401, 403), (path, page.status_code, page.text[:300])
    assert leaks(page.text, ACME_DATA) == []
    separator = "&" if "?" in path else "?"
    async with live.stream(f"{path}{separator}{LIVE_PARAM}={token}", headers=headers) as stream:
        assert stream.status_code in (401, 403), (path, stream.status_code, stream.body)
        assert not stream.is_event_stream
        assert stream.messages == []
        assert leaks(stream.body or "", ACME_DATA) == []


def tampered(cookie: str, account: str) -> str:
    """`cookie` with its payload rewritten to name `account`, its signature kept."""
    payload, timestamp, signature = cookie.rsplit(".", 2)
    session = json.loads(b64decode(payload))
    session["account"] = account
    return ".".join([b64encode(json.dumps(session).encode()).decode(), timestamp, signature])


def swap_char(cookie: str, at: int) -> str:
    """`cookie` with the base64 character at `at` replaced by another."""
    assert cookie[at] not in ".=", cookie
    return cookie[:at] + ("A" if cookie[at] != "A" else "B") + cookie[at + 1 :]


def forged(account: str, secret: str) -> str:
    """A cookie for `account` signed with `secret`."""
    payload = b64encode(json.dumps({"account": account}).encode())
    return itsdangerous.TimestampSigner(secret).sign(payload).decode()


async def alice_token(setup: Setup) -> str:
    """A first-render token from alice's acme page (unused until a stream takes it)."""
    async with client(setup, setup.cookies["alice"]) as alice:
        page = await alice.page("/t/acme/people")
    token = httpx.URL(page.stream_url).params[LIVE_PARAM]
    assert len(token) > 8
    return token


async def test_the_signed_in_account_sees_its_own_tenant_live(setup: Setup) -> None:
    """The control for every refusal below: with her own cookie, alice gets acme's page and
    a stream that keeps it current, and nothing of globex."""
    async with client(setup, setup.cookies["alice"]) as alice:
        page = await alice.page("/t/acme/people")
        assert leaks(page.html, ACME_DATA) == list(ACME_DATA)
        assert leaks(page.html, GLOBEX_DATA) == []
        async with alice.stream(page.stream_url) as stream:
            assert stream.status_code == 200
            await setup.globex.insert(person("globex-gil"))
            await setup.acme.insert(person("acme-amy"))
            await stream.wait_for("people", lambda html: "acme-amy" in html)
            assert setup.live.stats().streams == 1
            for message in stream.messages:
                assert leaks(message.data, (*GLOBEX_DATA, "globex-gil")) == []


async def test_url_edits_reach_no_other_tenant(setup: Setup) -> None:
    token = await alice_token(setup)
    async with client(setup, setup.cookies["bob"]) as bob:
        for path in (
            "/t/acme/people",  # alice's tenant, bob's valid cookie
            "/t/ACME/people",
            "/t/%61cme/people",  # percent-encoded "acme"
            "/t/acme/people?tenant=globex",
            "/t/acme/people?account=alice",
            "/t/initech/people",  # a tenant nobody here belongs to
        ):
            await assert_refused(bob, path)
            await assert_refused(bob, path, token=token)  # with alice's own token
    setup.no_streams_or_watches()


async def test_header_edits_reach_no_other_tenant(setup: Setup) -> None:
    token = await alice_token(setup)
    forged_headers = [
        {"X-Tenant": "acme"},
        {"X-Account": "alice"},
        {"X-Forwarded-User": "alice", "X-Forwarded-Host": "acme.example"},
        {"Last-Event-ID": token},
        {"Accept": "text/event-stream"},  # a stream asked for by header alone
        {"HX-Request": "true", "HX-Current-URL": "/t/acme/people"},
    ]
    async with client(setup, setup.cookies["bob"]) as bob:
        for headers in forged_headers:
            await assert_refused(bob, "/t/acme/people", headers=headers)
            await assert_refused(bob, "/t/acme/people", headers=headers, token=token)

        # On bob's own tenant the headers are ignored: he gets globex's data, nothing else.
        for headers in forged_headers:
            page = await bob.http.get("/t/globex/people", headers=headers)
            assert page.status_code == 200
            assert leaks(page.text, ACME_DATA) == []
            assert leaks(page.text, GLOBEX_DATA) == list(GLOBEX_DATA)
            async with bob.stream(f"/t/globex/people?{LIVE_PARAM}=1", headers=headers) as s:
                assert s.status_code == 200
                html = await s.next_fragment("people")
                assert leaks(html, ACME_DATA) == []
                assert "globex-gus" in html
    # An X-Tenant header cannot take alice elsewhere either.
    async with client(setup, setup.cookies["alice"]) as alice:
        await assert_refused(alice, "/t/globex/people", headers={"X-Tenant": "globex"})
    setup.no_streams_or_watches()


async def test_cookie_edits_reach_no_other_tenant(setup: Setup) -> None:
    token = await alice_token(setup)
    alice, bob = setup.cookies["alice"], setup.cookies["bob"]
    cookies = {
        "none": None,
        "bob's cookie renamed to alice": tampered(bob, "alice"),
        "bob's payload, alice's signature": ".".join(
            [bob.rsplit(".", 2)[0], *alice.rsplit(".", 2)[1:]]
        ),
        "forged with another secret": forged("alice", "not-the-secret"),
        "unsigned payload": b64encode(json.dumps({"account": "alice"}).encode()).decode(),
        "alice's cookie, signature cut": alice.rsplit(".", 1)[0],
        # (Not the last character: base64's last one may only carry unused bits.)
        "alice's payload, one character changed": swap_char(alice, 2),
        "alice's signature, one character changed": swap_char(alice, len(alice) - 10),
        "garbage": "x" * 40,
    }
    for name, cookie in cookies.items():
        async with client(setup, cookie) as edited:
            page = await edited.http.get("/t/acme/people")
            assert page.status_code == 401, name
            await assert_refused(edited, "/t/acme/people")
            await assert_refused(edited, "/t/acme/people", token=token)
    # Bob's genuine cookie on alice's tenant: signed in, but not acme's.
    async with client(setup, bob) as genuine:
        page = await genuine.http.get("/t/acme/people")
        assert page.status_code == 403
        await assert_refused(genuine, "/t/acme/people", token=token)
    # The control: alice's cookie, unedited, is accepted.
    async with client(setup, alice) as control:
        assert (await control.http.get("/t/acme/people")).status_code == 200
    setup.no_streams_or_watches()


async def test_a_first_render_token_replayed_on_another_tenant_shows_none_of_its_data(
    setup: Setup,
) -> None:
    token = await alice_token(setup)
    async with client(setup, setup.cookies["bob"]) as bob:
        fresh = await bob.page("/t/globex/people")
        async with bob.stream(f"/t/globex/people?{LIVE_PARAM}={token}") as stream:
            assert stream.status_code == 200
            # Acme's page showed other fragments, so globex's all come, and only globex's.
            await stream.next_fragment("people")
            first = stream.messages[0]
            assert set(first.fragments) == {"people", "count"}
            for name, html in first.fragments.items():
                assert leaks(html, ACME_DATA) == []
                assert html.replace(' hx-swap-oob="true"', "") == fresh.fragments[name]
            # Later changes are globex's, never acme's.
            await setup.acme.insert(person("acme-ava"))
            await setup.globex.insert(person("globex-gwen"))
            html = await stream.wait_for("people", lambda html: "globex-gwen" in html)
            assert leaks(html, (*ACME_DATA, "acme-ava")) == []
            assert all(
                leaks(message.data, (*ACME_DATA, "acme-ava")) == [] for message in stream.messages
            )
    # Alice's own stream with the token (now used up) still gets acme's current state.
    alice = client(setup, setup.cookies["alice"])
    async with alice, alice.stream(f"/t/acme/people?{LIVE_PARAM}={token}") as stream:
        html = await stream.next_fragment("people")
        assert "acme-ava" in html and leaks(html, GLOBEX_DATA) == []
