"""The JSON API under /api/t/{tenant}/people, over httpx against the app under uvicorn: list,
create, get, patch, put and delete; bad input gets 422 (or another 4xx) and writes nothing;
unknown ids get 404; the routes are in the OpenAPI schema; and schemathesis, generating
requests from that schema, never gets a 5xx."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from app_helpers import AppServer, person_json, server_on_copy, sign_in, stop_and_check, unique
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

API = "/api/t/acme/people"


@pytest.fixture
def ada(shared_server: str) -> Iterator[httpx.Client]:
    """Ada (acme) signed in, sending her CSRF header with every request."""
    with httpx.Client(base_url=shared_server, timeout=10) as client:
        client.headers["X-CSRF-Token"] = sign_in(client, "ada@acme.test")
        yield client


def people(client: httpx.Client) -> list[dict[str, Any]]:
    answer = client.get(API)
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()
    return listed


def create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    answer = client.post(API, json=person_json(**fields))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_the_api_routes_are_in_the_openapi_schema(shared_server: str) -> None:
    schema = httpx.get(shared_server + "/openapi.json").json()
    paths = schema["paths"]
    assert set(paths[API.replace("acme", "{tenant}")]) >= {"get", "post"}
    one = paths[API.replace("acme", "{tenant}") + "/{person_id}"]
    assert set(one) >= {"get", "patch", "put", "delete"}
    post = paths[API.replace("acme", "{tenant}")]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PersonIn"}
    assert "422" in post["responses"]
    person_in = schema["components"]["schemas"]["PersonIn"]
    assert person_in["required"] == ["name", "email", "team"]
    assert person_in["additionalProperties"] is False


def test_list_create_get_patch_put_delete(ada: httpx.Client) -> None:
    before = people(ada)
    assert {"Ada Lovelace", "Edsger Dijkstra"} <= {p["name"] for p in before}
    assert all(p["email"].endswith("@acme.test") for p in before)  # acme's people only
    name = unique("Api")
    sent = person_json(name, team=" api-team ", email=f"  {name.replace(' ', '.')}@ACME.test ")
    created = ada.post(API, json=sent)
    assert created.status_code == 201, created.text
    person = created.json()
    # Stored as validated: whitespace stripped, the email lower-cased.
    assert person == {
        "id": person["id"],
        "name": name,
        "email": f"{name.replace(' ', '.')}@acme.test".lower(),
        "team": "api-team",
    }
    url = f"{API}/{person['id']}"
    assert ada.get(url).json() == person
    listed = people(ada)
    assert person in listed and len(listed) == len(before) + 1
    assert [p["name"] for p in listed] == sorted(p["name"] for p in listed)

    patched = ada.patch(url, json={"team": "platform"})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**person, "team": "platform"}
    assert ada.patch(url, json={}).json() == {**person, "team": "platform"}  # nothing to change

    replacement = {"name": "Replaced " + name, "email": "r@acme.test", "team": "x"}
    replaced = ada.put(url, json=replacement)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json() == {"id": person["id"], **replacement}
    assert ada.get(url).json() == replaced.json()

    deleted = ada.delete(url)
    assert deleted.status_code == 204 and deleted.content == b""
    assert ada.get(url).status_code == 404
    assert person["id"] not in {p["id"] for p in people(ada)}
    # PUT stores a person in full under their id: it creates them again after a delete.
    again = ada.put(url, json=person_json(name))
    assert again.status_code == 200 and again.json()["id"] == person["id"]
    assert ada.get(url).status_code == 200
    assert ada.delete(url).status_code == 204


def test_deleting_a_pinned_person_deletes_the_pin(ada: httpx.Client) -> None:
    person = create(ada)
    pin = ada.post(f"/t/acme/people/{person['id']}/pin")
    assert pin.status_code == 303
    assert ada.delete(f"{API}/{person['id']}").status_code == 204
    assert person["name"] not in ada.get("/t/acme/people").text
    # Created again with the same id, they are not pinned: no pin was left behind.
    again = ada.put(f"{API}/{person['id']}", json=person_json(person["name"]))
    assert again.status_code == 200
    page = ada.get("/t/acme/people").text
    pinned = page[page.index('id="fdbsync-pinned"') : page.index('id="fdbsync-teams"')]
    assert person["name"] in page and person["name"] not in pinned


UNKNOWN = "no-such-person-0000"


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("PATCH", {"name": "Nobody"}), ("DELETE", None)],
)
def test_unknown_ids_get_404(ada: httpx.Client, method: str, body: Any) -> None:
    before = people(ada)
    answer = ada.request(method, f"{API}/{UNKNOWN}", json=body)
    assert answer.status_code == 404, answer.text
    assert UNKNOWN in answer.json()["detail"]
    assert people(ada) == before


def test_an_unknown_tenant_gets_403_not_an_empty_list(ada: httpx.Client) -> None:
    assert ada.get("/api/t/nowhere/people").status_code == 403


#: Longer than a storage key may be (10,000 bytes), and far over the ids' limit (100).
TOO_LONG = "x" * 10_000


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", API + "/{id}"),
        ("PATCH", API + "/{id}"),
        ("PUT", API + "/{id}"),
        ("DELETE", API + "/{id}"),
        ("GET", "/t/acme/people/{id}"),
        ("GET", "/t/acme/people/{id}?fdbsync-live=1"),
        ("GET", "/t/acme/people/{id}/edit"),
        ("POST", "/t/acme/people/{id}/edit"),
        ("POST", "/t/acme/people/{id}/delete"),
        ("POST", "/t/acme/people/{id}/pin"),
        ("POST", "/t/acme/people/{id}/unpin"),
        ("POST", "/t/acme/people/{id}/restore"),
        ("GET", "/t/acme/teams/{id}"),
        ("GET", "/t/acme/teams/{id}?fdbsync-live=1"),
    ],
)
def test_ids_and_teams_too_long_for_a_key_get_422(
    ada: httpx.Client, method: str, path: str
) -> None:
    """They would be part of a storage key: refused before the storage layer refuses them
    with a 500."""
    before = people(ada)
    url = path.format(id=TOO_LONG)
    if path.startswith("/api/"):
        answer = ada.request(method, url, json=person_json() if method != "GET" else None)
    else:
        answer = ada.request(method, url, data=person_json() if method == "POST" else None)
    assert answer.status_code == 422, (method, path, answer.status_code, answer.text[:300])
    assert people(ada) == before


def test_the_longest_id_works(ada: httpx.Client) -> None:
    url = f"{API}/{'i' * 100}"
    assert ada.put(url, json=person_json()).status_code == 200
    assert ada.get(url).status_code == 200
    assert ada.get(f"/t/acme/people/{'i' * 100}").status_code == 200
    assert ada.delete(url).status_code == 204
    assert ada.put(f"{API}/{'i' * 101}", json=person_json()).status_code == 422


# -- bad input -----------------------------------------------------------------------------------

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
GOOD = {"name": "Valid Name", "email": "valid@acme.test", "team": "valid"}

#: Bodies no write may accept: (id, raw content, content type).
BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("not json", b"{'name': 'single quotes'}", JSON),
    ("truncated json", b'{"name": "Ada", "email":', JSON),
    ("empty body", b"", JSON),
    ("json null", b"null", JSON),
    ("json array", json.dumps([GOOD]).encode(), JSON),
    ("json string", json.dumps(json.dumps(GOOD)).encode(), JSON),
    ("name a number", json.dumps({**GOOD, "name": 42}).encode(), JSON),
    ("team a list", json.dumps({**GOOD, "team": ["a"]}).encode(), JSON),
    ("email an object", json.dumps({**GOOD, "email": {}}).encode(), JSON),
    ("name null", json.dumps({**GOOD, "name": None}).encode(), JSON),
    ("extra field", json.dumps({**GOOD, "admin": True}).encode(), JSON),
    ("id in the body", json.dumps({**GOOD, "id": "chosen"}).encode(), JSON),
    ("empty name", json.dumps({**GOOD, "name": ""}).encode(), JSON),
    ("blank name", json.dumps({**GOOD, "name": "   "}).encode(), JSON),
    ("empty email", json.dumps({**GOOD, "email": ""}).encode(), JSON),
    ("empty team", json.dumps({**GOOD, "team": ""}).encode(), JSON),
    ("not an email", json.dumps({**GOOD, "email": "nobody"}).encode(), JSON),
    ("team with a space", json.dumps({**GOOD, "team": "two words"}).encode(), JSON),
    ("team upper-case", json.dumps({**GOOD, "team": "Valid"}).encode(), JSON),
    ("name too long", json.dumps({**GOOD, "name": "x" * 101}).encode(), JSON),
    ("huge name", json.dumps({**GOOD, "name": "x" * 1_000_000}).encode(), JSON),
    (
        "huge email",
        json.dumps({**GOOD, "email": "a" * 100_000 + "@b.c"}).encode(),
        JSON,
    ),
    ("team too long", json.dumps({**GOOD, "team": "t" * 41}).encode(), JSON),
    ("invalid utf-8", b'{"name": "\xff\xfe", "email": "a@b.c", "team": "t"}', JSON),
    ("text/plain", json.dumps(GOOD).encode(), "text/plain"),
    (
        "form encoded",
        b"name=Valid+Name&email=valid%40acme.test&team=valid",
        FORM,
    ),
    ("no content type", json.dumps(GOOD).encode(), ""),
]
#: What PATCH must refuse as well (every field is optional there, so missing ones are fine).
#: (A null is fine in a patch: the schema says so, and it leaves the field as it is.)
BAD_PATCHES = [case for case in BAD_BODIES if case[0] != "name null"] + [
    ("json object of the wrong shape", b'{"name": {"first": "A"}}', JSON),
]
MISSING: list[tuple[str, bytes, str]] = [
    ("empty object", b"{}", JSON),
    ("no team", json.dumps({"name": "A", "email": "a@acme.test"}).encode(), JSON),
]


def cases(bodies: list[tuple[str, bytes, str]]) -> list[Any]:
    return [pytest.param(*body, id=body[0]) for body in bodies]


def send(
    client: httpx.Client, method: str, url: str, content: bytes, content_type: str
) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return client.request(method, url, content=content, headers=headers)


def refused(case: str, content_type: str, answer: httpx.Response) -> None:
    """4xx; 422 for any body sent as JSON (or untyped), except undecodable bytes, which
    FastAPI answers with 400 ("There was an error parsing the body")."""
    what = f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}"
    assert 400 <= answer.status_code < 500, what
    if content_type in (JSON, "") and case != "invalid utf-8":
        assert answer.status_code == 422, what


@pytest.mark.parametrize(("case", "content", "content_type"), cases(BAD_BODIES + MISSING))
def test_bad_bodies_get_422_and_write_nothing(
    ada: httpx.Client, case: str, content: bytes, content_type: str
) -> None:
    existing = create(ada)
    before = people(ada)
    new_id = "fresh-" + unique("id").replace(" ", "-")
    for method, url in [
        ("POST", API),
        ("PUT", f"{API}/{existing['id']}"),  # would replace
        ("PUT", f"{API}/{new_id}"),  # would create
    ]:
        refused(case, content_type, send(ada, method, url, content, content_type))
    assert people(ada) == before
    assert ada.get(f"{API}/{new_id}").status_code == 404


@pytest.mark.parametrize(("case", "content", "content_type"), cases(BAD_PATCHES))
def test_bad_patches_get_422_and_change_nothing(
    ada: httpx.Client, case: str, content: bytes, content_type: str
) -> None:
    existing = create(ada)
    before = people(ada)
    refused(
        case, content_type, send(ada, "PATCH", f"{API}/{existing['id']}", content, content_type)
    )
    assert people(ada) == before
    assert ada.get(f"{API}/{existing['id']}").json() == existing


def test_a_patch_with_nulls_changes_nothing(ada: httpx.Client) -> None:
    existing = create(ada)
    answer = ada.patch(f"{API}/{existing['id']}", json={"name": None, "team": None})
    assert answer.status_code == 200 and answer.json() == existing


def test_422_names_the_field(ada: httpx.Client) -> None:
    answer = ada.post(API, json={**GOOD, "team": "Not Valid"})
    assert answer.status_code == 422
    assert [error["loc"] for error in answer.json()["detail"]] == [["body", "team"]]


def test_limits_are_inclusive(ada: httpx.Client) -> None:
    longest = create(ada, name="N" * 100, team="t" * 40)
    assert len(longest["name"]) == 100 and len(longest["team"]) == 40
    assert ada.delete(f"{API}/{longest['id']}").status_code == 204


# -- schemathesis ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed_server(seeded_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A server of its own: generated requests leave junk people behind."""
    server = server_on_copy(seeded_db, tmp_path_factory.mktemp("fuzzed"))
    try:
        yield server
    finally:
        stop_and_check(server)


@pytest.fixture(scope="module")
def fuzzed_session(fuzzed_server: AppServer) -> Iterator[requests.Session]:
    """Ada signed in on the fuzzed server, with her CSRF header on every request."""
    with httpx.Client(base_url=fuzzed_server.url) as client:
        token = sign_in(client, "ada@acme.test")
        cookies = dict(client.cookies)
    session = requests.Session()
    session.cookies.update(cookies)
    session.headers["X-CSRF-Token"] = token
    yield session
    session.close()


#: Generated requests per operation, generation mode and person id (a modest number, so the
#: test takes seconds: every operation still gets valid and invalid cases).
EXAMPLES = 12
#: The person operations on one person id also run on: stored again before each request.
KNOWN_ID = "known-person"
KNOWN = {"name": "Known Person", "email": "known@acme.test", "team": "qa"}


def test_no_generated_request_gets_a_server_error(
    fuzzed_server: AppServer, fuzzed_session: requests.Session
) -> None:
    """Requests schemathesis generates from /openapi.json, valid and invalid, signed in as
    Ada with her CSRF header, in her tenant (so they pass the tenant check), for every
    operation but signing out: none gets a 5xx, none signs her out. Operations on one person
    run with generated ids and with the id of a person who exists."""
    base = fuzzed_server.url
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()

    def store_known() -> None:
        stored = fuzzed_session.put(f"{base}{API}/{KNOWN_ID}", json=KNOWN, timeout=10)
        assert stored.status_code == 200, stored.text

    def run(strategy: Any, known: bool) -> None:
        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def check(case: schemathesis.Case) -> None:
            if known:
                store_known()
            response = case.call(
                base_url=base, session=fuzzed_session, timeout=10, allow_redirects=False
            )
            status = response.status_code
            statuses[case.operation.label, status] += 1
            if status >= 500 or (status == 401 and case.operation.path != "/signin"):
                failures.append(f"{status} for {case.as_curl_command()}\n{response.text[:500]}")

        check()

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema is valid
        operation = result.ok()
        if operation.path == "/signout":
            continue  # later requests would be signed out; it has tests of its own
        names = {parameter.name for parameter in operation.path_parameters}
        fixed = {"tenant": "acme"} if "tenant" in names else {}
        runs = [(fixed, False)]
        if "person_id" in names:
            runs.append(({**fixed, "person_id": KNOWN_ID}, True))
        for path, known in runs:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(mode, path_parameters=path or None)
                try:
                    run(strategy, known)
                except Unsatisfiable:
                    # Nothing to make invalid: no parameters, or only fixed ones.
                    assert mode is GenerationMode.NEGATIVE, operation.label
    assert not failures, "\n\n".join(failures)
    # Not vacuous: every API operation ran, and valid requests got through.
    one = API.replace("acme", "{tenant}") + "/{person_id}"
    for label, status in [
        (f"GET {API.replace('acme', '{tenant}')}", 200),
        (f"POST {API.replace('acme', '{tenant}')}", 201),
        (f"POST {API.replace('acme', '{tenant}')}", 422),
        (f"GET {one}", 200),
        (f"PATCH {one}", 200),
        (f"PATCH {one}", 422),
        (f"PUT {one}", 200),
        (f"DELETE {one}", 204),
        (f"GET {one}", 404),
    ]:
        assert statuses[label, status] > 0, (label, status, sorted(statuses.items()))


# -- the pages' forms ----------------------------------------------------------------------------


def test_page_forms_show_errors_for_bad_input_and_write_nothing(ada: httpx.Client) -> None:
    """The add and edit forms validate as the API does: htmx gets the form back with a
    message by each bad field; nothing is written."""
    existing = create(ada)
    before = people(ada)
    htmx = {"HX-Request": "true"}
    bad = {"name": "  ", "email": "not-an-email", "team": "Not A Team"}
    added = ada.post("/t/acme/people", data=bad, headers=htmx)
    assert added.status_code == 200
    assert added.text.count('class="error"') == 3
    assert 'value="not-an-email"' in added.text  # what was typed stays in the form
    edited = ada.post(f"/t/acme/people/{existing['id']}/edit", data=bad, headers=htmx)
    assert edited.status_code == 200 and edited.text.count('class="error"') == 3
    restored = ada.post(f"/t/acme/people/{existing['id']}/restore", data={"name": "x"})
    assert restored.status_code == 422
    assert people(ada) == before
    # An unknown person cannot be edited, pinned or deleted.
    for action in ("edit", "pin", "delete"):
        answer = ada.post(f"/t/acme/people/{UNKNOWN}/{action}", data=person_json())
        assert answer.status_code == 404, (action, answer.status_code)
    assert ada.get(f"/t/acme/people/{UNKNOWN}/edit").status_code == 404
    assert people(ada) == before
