"""/metrics: Prometheus's text format, and figures that move as live pages come and go and
as changes are pushed to them. On a server of its own with one worker (each worker reports
its own figures), so no other test moves them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from app_helpers import (
    AppServer,
    StartServer,
    open_stream,
    person_json,
    shows,
    sign_in_async,
    unique,
)
from prometheus_client.parser import text_string_to_metric_families

from fdbsync.testing import LiveClient

pytestmark = pytest.mark.slow

GAUGES = {
    "fdbsync_live_streams",
    "fdbsync_live_sessions",
    "fdbsync_storage_watches",
    "fdbsync_shared_reads",
}
COUNTERS = {
    "fdbsync_pushes",
    "fdbsync_messages",
    "fdbsync_fragments",
    "fdbsync_fragment_renders",
    "fdbsync_fragment_shared_renders",
    "fdbsync_rereads",
    "fdbsync_watch_fires",
}
HISTOGRAM = "fdbsync_push_latency_seconds"
API = "/api/t/acme/people"


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    """Every sample of /metrics by name (histogram buckets as name{le})."""
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for family in text_string_to_metric_families(answer.text):
        kinds[family.name] = family.type
        for sample in family.samples:
            le = sample.labels.get("le")
            samples[sample.name if le is None else f"{sample.name}{{{le}}}"] = sample.value
    assert {name: kinds.get(name) for name in GAUGES} == dict.fromkeys(GAUGES, "gauge")
    assert {name: kinds.get(name) for name in COUNTERS} == dict.fromkeys(COUNTERS, "counter")
    assert kinds.get(HISTOGRAM) == "histogram"
    return samples


async def eventually(
    client: httpx.AsyncClient, holds: Callable[[dict[str, float]], bool], what: str
) -> dict[str, float]:
    """Scrape until `holds`: a stream's end reaches the server's figures with no event a
    client can await (the server notices the disconnect in its own time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        samples = await scrape(client)
        if holds(samples):
            return samples
        assert loop.time() < deadline, f"{what}: never happened; the figures: {samples}"
        await asyncio.sleep(0.05)


def shared_renders(samples: dict[str, float]) -> float:
    return samples["fdbsync_fragment_shared_renders_total"]


def fragments_done(samples: dict[str, float]) -> float:
    """Fragments rendered or taken from an equal render."""
    return samples["fdbsync_fragment_renders_total"] + shared_renders(samples)


@pytest.fixture
async def server(app_server: StartServer) -> AppServer:
    return await asyncio.to_thread(app_server, 1)


@pytest.fixture
async def ada(server: AppServer) -> AsyncIterator[LiveClient]:
    async with LiveClient(server.url, timeout=10) as client:
        client.http.headers["X-CSRF-Token"] = await sign_in_async(client.http, "ada@acme.test")
        yield client


PEOPLE = "/t/acme/people"


async def test_metrics_parse_and_start_at_rest(ada: LiveClient) -> None:
    samples = await scrape(ada.http)
    for name in GAUGES:
        assert samples[name] == 0, name
    for name in ("fdbsync_pushes_total", "fdbsync_messages_total", "fdbsync_rereads_total"):
        assert samples[name] == 0, name
    assert samples[f"{HISTOGRAM}_count"] == 0
    # Pages rendered so far (sign-in shows the people page) count their fragment renders.
    assert samples["fdbsync_fragment_renders_total"] > 0
    # No sign-in needed, and not part of the API's schema.
    async with httpx.AsyncClient(base_url=ada.http.base_url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200
    assert "/metrics" not in (await ada.http.get("/openapi.json")).json()["paths"]


async def test_figures_follow_streams_and_pushes(ada: LiveClient) -> None:
    http = ada.http
    rest = await scrape(http)
    async with AsyncExitStack() as stack:
        stream = await open_stream(stack, ada, PEOPLE, "people")
        one = await scrape(http)
        assert one["fdbsync_live_streams"] == 1
        assert one["fdbsync_live_sessions"] == 1
        # The page's reads: its sign-in, everyone, the pins and the pinned people.
        assert one["fdbsync_shared_reads"] >= 4
        assert one["fdbsync_storage_watches"] >= 3
        assert one["fdbsync_messages_total"] == rest["fdbsync_messages_total"] + 1  # connect
        assert one["fdbsync_pushes_total"] == 0  # a connect is no push

        # A second page showing the same: one more stream and session, no more reads.
        second = await open_stream(stack, ada, PEOPLE, "people")
        two = await scrape(http)
        assert two["fdbsync_live_streams"] == 2 and two["fdbsync_live_sessions"] == 2
        assert two["fdbsync_shared_reads"] == one["fdbsync_shared_reads"]
        assert two["fdbsync_storage_watches"] == one["fdbsync_storage_watches"]

        # A change: pushed to both pages, the shared reads re-read once.
        name = unique("Pushed")
        assert (await http.post(API, json=person_json(name))).status_code == 201
        await shows(stream, "people", name)
        await shows(second, "people", name)
        pushed = await eventually(http, lambda s: s[f"{HISTOGRAM}_count"] == 2, "both pushes")
        assert pushed["fdbsync_pushes_total"] == 2
        assert pushed["fdbsync_messages_total"] == two["fdbsync_messages_total"] + 2
        # Each message carries the people list and the teams: two fragments each.
        assert pushed["fdbsync_fragments_total"] == two["fdbsync_fragments_total"] + 4
        assert fragments_done(pushed) == fragments_done(two) + 4
        # The second page takes at least the teams fragment from the first's render.
        assert shared_renders(pushed) >= shared_renders(two) + 1
        assert pushed["fdbsync_watch_fires_total"] > two["fdbsync_watch_fires_total"]
        assert pushed["fdbsync_rereads_total"] > two["fdbsync_rereads_total"]
        assert 0 < pushed[f"{HISTOGRAM}_sum"] < 2 * 5.0
        assert pushed[f"{HISTOGRAM}_bucket{{+Inf}}"] == 2
        assert pushed[f"{HISTOGRAM}_bucket{{5.0}}"] == 2  # both under 5 s
        assert pushed["fdbsync_live_streams"] == 2  # still open

        # A change in another tenant pushes nothing to acme's pages: the next acme change
        # (made after it) is the next push.
        async with httpx.AsyncClient(base_url=http.base_url) as grace:
            grace_token = await sign_in_async(grace, "grace@globex.test")
            globex = await grace.post(
                "/api/t/globex/people",
                json=person_json(email="someone@globex.test"),
                headers={"X-CSRF-Token": grace_token},
            )
            assert globex.status_code == 201
        later = unique("Later")
        assert (await http.post(API, json=person_json(later))).status_code == 201
        await shows(stream, "people", later)
        await shows(second, "people", later)
        after = await eventually(http, lambda s: s[f"{HISTOGRAM}_count"] >= 4, "the next pushes")
        assert after["fdbsync_pushes_total"] == 4 and after[f"{HISTOGRAM}_count"] == 4
    closed = await eventually(
        http,
        lambda s: s["fdbsync_live_streams"] == 0 and s["fdbsync_live_sessions"] == 0,
        "the closed streams let go",
    )
    assert closed["fdbsync_storage_watches"] == 0
    assert closed["fdbsync_shared_reads"] == 0
    assert closed["fdbsync_pushes_total"] == 4  # counters keep their counts


async def test_a_page_stream_that_ends_by_sign_out_leaves_nothing_behind(
    ada: LiveClient,
) -> None:
    async with AsyncExitStack() as stack:
        stream = await open_stream(stack, ada, PEOPLE, "people")
        assert (await scrape(ada.http))["fdbsync_live_streams"] == 1
        token = ada.http.headers["X-CSRF-Token"]
        assert (await ada.http.post("/signout", data={"csrf_token": token})).status_code == 303
        await stream.ended(timeout=10)
        samples = await eventually(
            ada.http, lambda s: s["fdbsync_live_streams"] == 0, "the signed-out stream ended"
        )
    assert samples["fdbsync_live_sessions"] == 0 and samples["fdbsync_storage_watches"] == 0


async def test_a_push_renders_each_fragment_once_for_pages_showing_the_same(
    ada: LiveClient,
) -> None:
    http = ada.http
    async with AsyncExitStack() as stack:
        streams = [await open_stream(stack, ada, PEOPLE, "people") for _ in range(3)]
        before = await scrape(http)
        name = unique("Shared")
        assert (await http.post(API, json=person_json(name))).status_code == 201
        for stream in streams:
            await shows(stream, "people", name)
        after = await eventually(http, lambda s: s[f"{HISTOGRAM}_count"] == 3, "three pushes")
    # Three pages, two fragments each (people and teams): two renders, four shared.
    assert fragments_done(after) == fragments_done(before) + 6
    renders = after["fdbsync_fragment_renders_total"] - before["fdbsync_fragment_renders_total"]
    assert (renders, shared_renders(after) - shared_renders(before)) == (2, 4)
