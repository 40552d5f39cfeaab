"""Tenant isolation, sign-in and CSRF, over httpx against the app under uvicorn.

Every page, live stream and API route of tenant acme (found in the app's OpenAPI schema, so a
route added later is covered too) answers 403 to a globex account and sends a signed-out
browser to sign in (401 for the API and streams). A session cookie that was edited, signed
with another key, or names a sign-in that does not exist is no sign-in. Unsafe requests
without the CSRF token, or with a wrong one, get 403 and write nothing; with the token (the
`X-CSRF-Token` header htmx sends, or the form field) they work. Signing out ends the live
streams of that sign-in, and its cookie no longer works.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import itsdangerous
import pytest
from app_helpers import (
    PASSWORD,
    SECRET,
    open_stream,
    person_json,
    shows,
    sign_in,
    sign_in_async,
    unique,
)

from fdbsync.testing import ClientStream, LiveClient

API = "/api/t/acme/people"
COOKIE = "fdbsync_session"
UNSAFE = {"post", "put", "patch", "delete"}


@pytest.fixture
def ada(shared_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server, timeout=10) as client:
        client.headers["X-CSRF-Token"] = sign_in(client, "ada@acme.test")
        yield client


@pytest.fixture
def grace(shared_server: str) -> Iterator[httpx.Client]:
    """An account of the other tenant, globex, with her own valid CSRF token."""
    with httpx.Client(base_url=shared_server, timeout=10) as client:
        client.headers["X-CSRF-Token"] = sign_in(client, "grace@globex.test")
        yield client


@pytest.fixture
def anonymous(shared_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server, timeout=10) as client:
        yield client


def acme_state(ada: httpx.Client) -> tuple[Any, str]:
    """Acme's people (API) and pinned list (the people page's fragment)."""
    people = ada.get(API)
    assert people.status_code == 200
    page = ada.get("/t/acme/people").text
    pinned = re.search(r'<ul id="fdbsync-pinned".*?</ul>', page, re.S)
    assert pinned
    return people.json(), pinned.group(0)


def tenant_routes(client: httpx.Client) -> list[tuple[str, str]]:
    """(method, path template) of every route under a tenant, from the OpenAPI schema."""
    schema = client.get("/openapi.json").json()
    routes = [
        (method, path)
        for path, operations in schema["paths"].items()
        if path.startswith(("/t/{tenant}", "/api/t/{tenant}"))
        for method in operations
    ]
    expected = {
        ("get", "/t/{tenant}/people"),
        ("post", "/t/{tenant}/people"),
        ("get", "/t/{tenant}/teams/{team}"),
        ("get", "/t/{tenant}/people/{person_id}"),
        ("get", "/t/{tenant}/people/{person_id}/edit"),
        ("post", "/t/{tenant}/people/{person_id}/edit"),
        ("post", "/t/{tenant}/people/{person_id}/delete"),
        ("post", "/t/{tenant}/people/{person_id}/pin"),
        ("post", "/t/{tenant}/people/{person_id}/unpin"),
        ("post", "/t/{tenant}/people/{person_id}/restore"),
        ("get", "/api/t/{tenant}/people"),
        ("post", "/api/t/{tenant}/people"),
        ("get", "/api/t/{tenant}/people/{person_id}"),
        ("patch", "/api/t/{tenant}/people/{person_id}"),
        ("put", "/api/t/{tenant}/people/{person_id}"),
        ("delete", "/api/t/{tenant}/people/{person_id}"),
    }
    assert expected <= set(routes), expected - set(routes)
    return routes


#: The live pages: their URL with `?fdbsync-live=...` is their stream.
LIVE_PAGES = ["/t/{tenant}/people", "/t/{tenant}/teams/{team}", "/t/{tenant}/people/{person_id}"]


def request_for(
    client: httpx.Client,
    method: str,
    template: str,
    person_id: str,
    csrf: str | None,
    header: bool = True,
) -> httpx.Response:
    """A well-formed request to the route, with `csrf` as the form field (forms) and, with
    `header`, as the header."""
    url = template.format(tenant="acme", team="engines", person_id=person_id)
    headers = {"X-CSRF-Token": csrf} if csrf is not None and header else {}
    if method == "get":
        return client.get(url, headers=headers)
    if url.startswith("/api/"):
        body = person_json() if method in ("post", "put") else {"name": "Changed"}
        return client.request(method.upper(), url, json=body, headers=headers)
    form = {**person_json(), **({} if csrf is None else {"csrf_token": csrf})}
    return client.request(method.upper(), url, data=form, headers=headers)


def test_another_tenants_account_gets_403_everywhere(
    ada: httpx.Client, grace: httpx.Client
) -> None:
    person = ada.post(API, json=person_json()).json()
    before = acme_state(ada)
    routes = tenant_routes(grace)
    for method, template in routes:
        answer = request_for(grace, method, template, person["id"], grace.headers["X-CSRF-Token"])
        where = f"{method.upper()} {template}"
        assert answer.status_code == 403, (where, answer.status_code, answer.text)
        assert "has no access to tenant" in answer.text, where
        assert person["name"] not in answer.text and "Ada Lovelace" not in answer.text
    for template in LIVE_PAGES:
        url = template.format(tenant="acme", team="engines", person_id=person["id"])
        stream = grace.get(url, params={"fdbsync-live": "1"})
        assert stream.status_code == 403, (url, stream.status_code)
        assert "text/event-stream" not in stream.headers.get("content-type", "")
    assert acme_state(ada) == before
    # ...while her own tenant answers.
    assert grace.get("/t/globex/people").status_code == 200
    assert grace.get("/api/t/globex/people").status_code == 200


def test_signed_out_requests_go_to_sign_in_or_get_401(
    ada: httpx.Client, anonymous: httpx.Client
) -> None:
    person = ada.post(API, json=person_json()).json()
    before = acme_state(ada)
    for method, template in tenant_routes(anonymous):
        answer = request_for(anonymous, method, template, person["id"], csrf=None)
        where = f"{method.upper()} {template}"
        if template.startswith("/api/"):
            assert answer.status_code == 401, (where, answer.status_code)
            assert answer.json() == {"detail": "sign in first"}
        else:
            assert answer.status_code == 303, (where, answer.status_code)
            assert answer.headers["location"] == "/signin"
    for template in LIVE_PAGES:
        url = template.format(tenant="acme", team="engines", person_id=person["id"])
        stream = anonymous.get(url, params={"fdbsync-live": "1"})
        assert stream.status_code == 401, (url, stream.status_code)
    assert anonymous.get("/").headers["location"] == "/signin"
    assert acme_state(ada) == before


def test_a_wrong_password_signs_nobody_in(anonymous: httpx.Client) -> None:
    for email, password in [
        ("ada@acme.test", "wrong"),
        ("ada@acme.test", PASSWORD.upper()),
        ("nobody@acme.test", PASSWORD),
        ("grace@globex.test", "ada's password?"),
    ]:
        answer = anonymous.post("/signin", data={"email": email, "password": password})
        assert answer.status_code == 401 and "Wrong email or password." in answer.text
        assert COOKIE not in anonymous.cookies
    assert anonymous.post("/signin", data={"email": "ada@acme.test"}).status_code == 422
    assert anonymous.get("/t/acme/people").status_code == 303


# -- the session cookie ----------------------------------------------------------------------


def session_cookie(client: httpx.Client) -> str:
    value = client.cookies.get(COOKIE)
    assert value, "no session cookie"
    return value


def signed(payload: dict[str, Any], key: str = SECRET) -> str:
    """A session cookie as Starlette's SessionMiddleware writes it, signed with `key`."""
    data = base64.b64encode(json.dumps(payload).encode())
    return itsdangerous.TimestampSigner(key).sign(data).decode()


def payload_of(cookie: str) -> dict[str, Any]:
    data = cookie.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.b64decode(data))
    return decoded


def assert_no_sign_in(base: str, cookie: str) -> None:
    with httpx.Client(base_url=base, cookies={COOKIE: cookie}, timeout=10) as client:
        page = client.get("/t/acme/people")
        assert page.status_code == 303 and page.headers["location"] == "/signin", cookie
        assert client.get(API).status_code == 401
        assert client.get("/t/acme/people", params={"fdbsync-live": "1"}).status_code == 401


def test_the_session_cookie_is_httponly_and_samesite_lax(anonymous: httpx.Client) -> None:
    answer = anonymous.post("/signin", data={"email": "bob@acme.test", "password": PASSWORD})
    assert answer.status_code == 303
    set_cookie = answer.headers["set-cookie"].lower()
    assert set_cookie.startswith(COOKIE + "=")
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/" in set_cookie


def test_a_tampered_or_forged_session_cookie_is_no_sign_in(
    shared_server: str, ada: httpx.Client
) -> None:
    cookie = session_cookie(ada)
    payload = payload_of(cookie)
    assert payload["account"] == "ada@acme.test"
    # The cookie as it is works (so what follows fails for the change alone).
    with httpx.Client(base_url=shared_server, cookies={COOKIE: cookie}) as client:
        assert client.get("/t/acme/people").status_code == 200
    data, timestamp, signature = cookie.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    other_account = base64.b64encode(
        json.dumps({**payload, "account": "bob@acme.test"}).encode()
    ).decode()
    for tampered in [
        f"{data}.{timestamp}.{flipped}",  # the signature edited
        f"{other_account}.{timestamp}.{signature}",  # the payload edited
        f"{data}.{timestamp}",  # the signature cut off
        signed(payload, key="not-the-app-key"),  # signed with another key
        "garbage",
    ]:
        assert_no_sign_in(shared_server, tampered)
    # Even with the app's key, the cookie must name a sign-in that exists, in the account's
    # tenant: it is checked against the database on every request.
    assert_no_sign_in(shared_server, signed({**payload, "signin": "no-such-signin"}))
    assert_no_sign_in(shared_server, signed({**payload, "account": "grace@globex.test"}))
    assert_no_sign_in(shared_server, signed({"signin": payload["signin"]}))
    assert_no_sign_in(shared_server, signed({**payload, "account": ["ada@acme.test"]}))


# -- CSRF ------------------------------------------------------------------------------------


def unsafe_routes(client: httpx.Client) -> list[tuple[str, str]]:
    return [(m, p) for m, p in tenant_routes(client) if m in UNSAFE]


@pytest.mark.parametrize(
    "token",
    ["missing", "empty", "wrong", "another sign-in's", "another account's"],
)
def test_unsafe_requests_without_the_right_csrf_token_get_403_and_write_nothing(
    shared_server: str, ada: httpx.Client, token: str
) -> None:
    # Ada's requests below carry only the token under test, not her own.
    own = ada.headers.pop("X-CSRF-Token")
    with httpx.Client(base_url=shared_server) as other:
        email = "bob@acme.test" if token == "another account's" else "ada@acme.test"
        other_token = sign_in(other, email)
    sent = {
        "missing": None,
        "empty": "",
        "wrong": "0" * 64,
        "another sign-in's": other_token,
        "another account's": other_token,
    }[token]
    assert sent != own
    person = ada.post(API, json=person_json(), headers={"X-CSRF-Token": own}).json()
    before = acme_state(ada)
    for method, template in unsafe_routes(ada):
        # In the header (and a form's field), then in a form's field alone.
        for header in (True, False) if not template.startswith("/api/") else (True,):
            answer = request_for(ada, method, template, person["id"], sent, header=header)
            where = f"{method.upper()} {template} (header: {header})"
            assert answer.status_code == 403, (where, answer.status_code, answer.text)
            assert "CSRF" in answer.text, where
    # Signing out is an unsafe request too.
    signout = ada.post("/signout", data={} if sent is None else {"csrf_token": sent})
    assert signout.status_code == 403
    assert acme_state(ada) == before  # still signed in, and nothing written


def test_unsafe_requests_with_the_csrf_token_work(ada: httpx.Client) -> None:
    token = ada.headers.pop("X-CSRF-Token")
    page = ada.get("/t/acme/people").text
    # The token the page carries for htmx (meta) and for plain forms (hidden fields) is one.
    assert set(re.findall(r'name="csrf_token" value="([0-9a-f]+)"', page)) == {token}
    header = {"X-CSRF-Token": token}
    # The API, with the header.
    person = ada.post(API, json=person_json(), headers=header)
    assert person.status_code == 201
    person_id = person.json()["id"]
    assert ada.patch(f"{API}/{person_id}", json={"team": "x"}, headers=header).status_code == 200
    assert ada.put(f"{API}/{person_id}", json=person_json(), headers=header).status_code == 200
    assert ada.delete(f"{API}/{person_id}", headers=header).status_code == 204
    # A plain form, with the field (as a browser without JavaScript posts it).
    name = unique("Form")
    added = ada.post("/t/acme/people", data={**person_json(name), "csrf_token": token})
    assert added.status_code == 303 and added.headers["location"] == "/t/acme/people"
    (added_person,) = [p for p in ada.get(API).json() if p["name"] == name]
    actions = f"/t/acme/people/{added_person['id']}"
    assert ada.post(actions + "/pin", data={"csrf_token": token}).status_code == 303
    assert name in acme_state(ada)[1]
    # htmx's requests, with the header (and no field): they answer 204 (the stream shows).
    htmx = {**header, "HX-Request": "true"}
    assert ada.post(actions + "/unpin", headers=htmx).status_code == 204
    assert name not in acme_state(ada)[1]
    edited = ada.post(actions + "/edit", data=person_json("Edited " + name), headers=htmx)
    assert edited.status_code == 200
    assert ada.get(f"{API}/{added_person['id']}").json()["name"] == "Edited " + name
    assert ada.post(actions + "/delete", headers=htmx).status_code == 204
    assert ada.get(f"{API}/{added_person['id']}").status_code == 404


# -- markup in data ----------------------------------------------------------------------------


async def test_markup_in_names_is_escaped_in_pages_and_streams(shared_server: str) -> None:
    evil = '<img src=x onerror="alert(1)">' + unique("Evil")
    async with LiveClient(shared_server, timeout=10) as ada, AsyncExitStack() as stack:
        token = await sign_in_async(ada.http, "ada@acme.test")
        stream = await open_stream(stack, ada, "/t/acme/people", "people")
        created = await ada.http.post(
            API,
            json=person_json(evil, email=f"evil.{unique('x')[2:]}@acme.test"),
            headers={"X-CSRF-Token": token},
        )
        assert created.status_code == 201
        person_id = created.json()["id"]
        escaped = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
        await shows(stream, "people", escaped)
        assert "<img" not in stream.latest["people"]
        for url in ("/t/acme/people", f"/t/acme/people/{person_id}", "/t/acme/teams/qa"):
            page = (await ada.http.get(url)).text
            assert escaped in page and "<img" not in page, url


# -- signing out -----------------------------------------------------------------------------

TEAM = "signout-team"
#: Each live page, and the fragment its stream sends first.
STREAMS = {
    "/t/acme/people": "people",
    f"/t/acme/teams/{TEAM}": "members",
    "/t/acme/people/{person_id}": "person",
}


async def open_streams(
    stack: AsyncExitStack, client: LiveClient, person_id: str, each: int
) -> list[ClientStream]:
    """`each` streams of each live page (several: with two workers, both serve some)."""
    return [
        await open_stream(stack, client, url.format(person_id=person_id), first)
        for url, first in STREAMS.items()
        for _ in range(each)
    ]


async def test_signing_out_ends_the_sign_ins_streams_and_its_cookie(shared_server: str) -> None:
    async with (
        LiveClient(shared_server, timeout=10) as ada,
        LiveClient(shared_server, timeout=10) as bob,
        LiveClient(shared_server, timeout=10) as elsewhere,
        AsyncExitStack() as stack,
    ):
        token = await sign_in_async(ada.http, "ada@acme.test")
        bob_token = await sign_in_async(bob.http, "bob@acme.test")
        # Ada signed in a second time, in another browser: a sign-in of its own.
        await sign_in_async(elsewhere.http, "ada@acme.test")
        cookie = ada.http.cookies[COOKIE]
        created = await ada.http.post(
            API, json=person_json(team=TEAM), headers={"X-CSRF-Token": token}
        )
        person = created.json()
        streams = await open_streams(stack, ada, person["id"], each=2)
        others = await open_streams(stack, bob, person["id"], each=1)
        others += await open_streams(stack, elsewhere, person["id"], each=1)

        # Without the token, signing out is refused.
        assert (await ada.http.post("/signout")).status_code == 403
        out = await ada.http.post("/signout", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        for stream in streams:
            await stream.ended(timeout=10)
            assert stream.error is None, stream.error  # ended by the server, cleanly
        # The other sign-ins' streams go on, and still show changes.
        name = unique("After")
        changed = await bob.http.patch(
            f"{API}/{person['id']}", json={"name": name}, headers={"X-CSRF-Token": bob_token}
        )
        assert changed.status_code == 200
        for stream, (url, first) in zip(others, [*STREAMS.items()] * 2, strict=True):
            await shows(stream, first, name)
            assert not stream.is_ended, url

        # The signed-out sign-in's cookie no longer signs anybody in: the browser was told
        # to drop it, and a copy kept of it is refused.
        assert COOKIE not in ada.http.cookies
    async with LiveClient(shared_server, cookies={COOKIE: cookie}) as old:
        page = await old.http.get("/t/acme/people")
        assert page.status_code == 303 and page.headers["location"] == "/signin"
        assert (await old.http.get(API)).status_code == 401
        async with old.stream("/t/acme/people") as refused:
            assert refused.status_code == 401 and not refused.is_event_stream
        again = await old.http.post(API, json=person_json(), headers={"X-CSRF-Token": token})
        assert again.status_code == 401
