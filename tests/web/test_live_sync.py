"""Live pages against a real uvicorn: each sync kind's fragments, plain pages holding nothing,
first connects and reconnects (across a restart), escaping, stream headers, and the route's
plumbing (parameters, dependencies, Responses, fragment mappings and their errors)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from data.models import Person

from fdbsync.testing import eventually
from fdbsync.testing.markup import scan
from fdbsync.web import FragmentError

from .liveapp import (
    ACME_KEY,
    ALL_LABELS,
    WITHIN_S,
    Seen,
    dash_path,
    dashboard_state,
    first_event,
    next_message_names,
    people_in,
    rows,
    running,
)

# -- each sync kind ------------------------------------------------------------------------------


async def test_sync_one_sends_the_record(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="blue"))
        assert people_in(page.fragments["one"]) == rows(await env.acme.get(Person, "ada"))
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            seen = len(stream.messages)
            await env.set("ada", age=37)
            # Ada is in `one` and `everyone`; not in `many` (bob) nor `team` (blue).
            assert await next_message_names(stream, seen) == {"one", "everyone"}
            one = await stream.next_fragment("one")
            assert one.startswith('<div id="fdbsync-one">')
            assert people_in(one) == rows(await env.acme.get(Person, "ada"))
            assert people_in(one) == [("ada", "Ada", "red", "37")]

            found = await env.acme.get(Person, "ada")
            assert found is not None
            await env.acme.delete(found)
            one = await stream.next_fragment("one")
            assert people_in(one) == [] == rows(await env.acme.get(Person, "ada"))


async def test_sync_many_sends_the_records_in_order(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path(pid="dee", ids="cy,bob", team="blue"))
        assert [r[0] for r in people_in(page.fragments["many"])] == ["cy", "bob"]
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            seen = len(stream.messages)
            await env.set("cy", name="Cyrus")
            assert await next_message_names(stream, seen) == {"many", "everyone"}
            many = await stream.next_fragment("many")
            expected = await env.acme.get_many(Person, ["cy", "bob"])
            assert people_in(many) == rows([p for p in expected if p is not None])
            assert [r[1] for r in people_in(many)] == ["Cyrus", "Bob"]

            bob = await env.acme.get(Person, "bob")
            assert bob is not None
            await env.acme.delete(bob)
            many = await stream.next_fragment("many")
            # A missing record drops out of the list.
            assert people_in(many) == rows(await env.acme.get(Person, "cy"))


async def test_sync_all_sends_every_record(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="red"))
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            seen = len(stream.messages)
            await env.acme.insert(Person(id="eve", name="Eve", email="eve@acme.test", team="green"))
            # Only `everyone` shows a green newcomer.
            assert await next_message_names(stream, seen) == {"everyone"}
            everyone = await stream.next_fragment("everyone")
            assert people_in(everyone) == rows(await env.acme.all(Person))
            assert [r[0] for r in people_in(everyone)] == ["ada", "bob", "cy", "dee", "eve"]
            # The other tenant's writes are not this page's.
            await env.globex.insert(Person(id="zed", name="Zed", email="z@globex.test"))
            await env.acme.insert(Person(id="fay", name="Fay", email="fay@acme.test", team="x"))
            everyone = await stream.next_fragment("everyone")
            assert people_in(everyone) == rows(await env.acme.all(Person))
            assert "zed" not in [r[0] for r in people_in(everyone)]


async def test_sync_all_by_sends_the_matching_records(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="blue"))
        assert people_in(page.fragments["team"]) == rows(
            await env.acme.all_by(Person, {"team": "blue"})
        )
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            seen = len(stream.messages)
            await env.acme.insert(Person(id="fay", name="Fay", email="fay@acme.test", team="blue"))
            assert await next_message_names(stream, seen) == {"team", "everyone"}
            team = await stream.next_fragment("team")
            assert people_in(team) == rows(await env.acme.all_by(Person, {"team": "blue"}))
            assert {r[0] for r in people_in(team)} == {"dee", "fay"}

            seen = len(stream.messages)
            await env.set("dee", team="red")  # leaves the blue team
            assert await next_message_names(stream, seen) == {"team", "everyone"}
            team = await stream.next_fragment("team")
            assert people_in(team) == rows(await env.acme.all_by(Person, {"team": "blue"}))
            assert [r[0] for r in people_in(team)] == ["fay"]

            # A red write moves the red counter only: nothing for this blue page's `team`.
            seen = len(stream.messages)
            await env.set("bob", team="red", age=42)
            assert await next_message_names(stream, seen) == {"many", "everyone"}


async def test_one_write_reaches_every_label_in_one_message(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        path = dash_path(pid="bob", ids="ada,bob", team="red")
        page = await env.client.page(path)
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            seen = len(stream.messages)
            await env.set("bob", name="Robert", age=50)
            assert await next_message_names(stream, seen) == ALL_LABELS
            message = stream.messages[seen]
            expected = await dashboard_state(env, pid="bob", ids=["ada", "bob"], team="red")
            assert {name: people_in(html) for name, html in message.fragments.items()} == expected


# -- plain pages hold nothing --------------------------------------------------------------------


async def test_a_thousand_page_gets_leave_no_watches(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        # One open stream, so the counters are shown to count: the pages must add nothing.
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="red"))
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            with_stream = env.hub()
            assert with_stream.sessions == 1 and with_stream.storage_watches == 4

            pids = ["ada", "bob", "cy", "dee", "nobody"]
            teams = ["red", "blue", "green"]
            gate = asyncio.Semaphore(25)

            async def get(index: int) -> int:
                path = dash_path(
                    pid=pids[index % 5], ids=",".join(pids[: index % 4]), team=teams[index % 3]
                )
                async with gate:
                    response = await env.client.http.get(path)
                assert 'hx-sse:connect="' in response.text
                return response.status_code

            statuses = await asyncio.gather(*(get(i) for i in range(1000)))
            assert statuses == [200] * 1000
            assert env.hub() == with_stream
            assert env.live.stats().streams == 1
            assert not stream.is_ended
        await eventually(lambda: env.hub().sessions == 0)
        stats = env.hub()
        assert (stats.storage_watches, stats.keys, stats.reads, stats.subscriptions) == (0, 0, 0, 0)
        assert env.live.stats().streams == 0


# -- connects and reconnects ---------------------------------------------------------------------


async def test_first_connect_skips_what_the_page_shows(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="blue"))
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            assert stream.messages == []
            assert stream.retry == 1000  # the reconnect delay, sent even with nothing to show
            assert env.live.stats().fragments == 0
            # The stream is live: a later change arrives, and nothing skipped came before it.
            await env.acme.insert(Person(id="eve", name="Eve", email="eve@acme.test", team="x"))
            everyone = await stream.next_fragment("everyone")
            assert people_in(everyone) == rows(await env.acme.all(Person))
            assert [set(m.fragments) for m in stream.messages] == [{"everyone"}]


async def test_first_connect_sends_what_changed_since_the_render(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="blue"))
        await env.set("ada", age=99)  # between the render and the connect
        async with env.client.stream(page.stream_url) as stream:
            names = await next_message_names(stream, 0)
            assert names == {"one", "everyone"}
            fragments = stream.messages[0].fragments
            expected = await dashboard_state(env, pid="ada", ids=["bob"], team="blue")
            assert people_in(fragments["one"]) == expected["one"]
            assert people_in(fragments["everyone"]) == expected["everyone"]
            assert ("ada", "Ada", "red", "99") in people_in(fragments["everyone"])


async def test_reconnect_after_restart_ends_with_the_database_state(tmp_path: Path) -> None:
    """The trap: the page was updated live, the server restarted, and the data went back to
    what the page first showed. Reconnecting with the page's original stream URL (its
    first-render token) must not skip fragments by the first render's digests."""
    async with running(tmp_path) as env:
        ids = ["bob", "cy"]
        page = await env.client.page(dash_path(pid="ada", ids="bob,cy", team="red"))
        first = await dashboard_state(env, pid="ada", ids=ids, team="red")
        shown = {name: people_in(html) for name, html in page.fragments.items()}
        assert shown == first

        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            await env.set("ada", age=37)
            await env.set("bob", name="Robert")
            now = await dashboard_state(env, pid="ada", ids=ids, team="red")
            for name in ALL_LABELS:
                await stream.wait_for(name, lambda html, n=name: people_in(html) == now[n])
            shown.update({name: people_in(html) for name, html in stream.latest.items()})
            assert shown == now != first

            await env.server.stop()
            await stream.ended(WITHIN_S)

        # While the server is down, the data goes back to what the page first showed.
        await env.set("ada", age=36)
        await env.set("bob", name="Bob")
        assert await dashboard_state(env, pid="ada", ids=ids, team="red") == first

        await env.server.start()
        calls = len(env.auth_calls)
        async with env.client.stream(page.stream_url) as stream:
            assert stream.status_code == 200
            assert await next_message_names(stream, 0) == ALL_LABELS
            shown.update({n: people_in(html) for n, html in stream.messages[0].fragments.items()})
            assert shown == first
            assert len(env.auth_calls) == calls + 1  # the route authorized the reconnect

            # And the restarted server's watches work.
            await env.set("cy", age=30)
            now = await dashboard_state(env, pid="ada", ids=ids, team="red")
            many = await stream.wait_for("many", lambda html: people_in(html) == now["many"])
            assert ("cy", "Cy", "red", "30") in people_in(many)


# -- escaping ------------------------------------------------------------------------------------

SCRIPT = '<script>alert("pwned")</script>'


async def test_a_script_name_arrives_escaped(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        await env.set("ada", name=SCRIPT)
        page = await env.client.page(dash_path(pid="ada", ids="bob", team="blue"))
        # The page: its only scripts are htmx's; the name is text.
        scripts = [e for e in scan(page.html) if e.tag == "script"]
        assert [e.attrs.get("src") for e in scripts] == [
            "/static/vendor/htmx4/htmx.min.js",
            "/static/vendor/htmx4/hx-sse.min.js",
        ]
        assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in page.fragments["one"]
        assert people_in(page.fragments["one"])[0][1] == SCRIPT

        # A header the route puts in the page's title.
        titled = await env.client.page(dash_path(), headers={"X-User": SCRIPT})
        assert "<title>acme &lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;</title>" in (
            titled.html
        )
        assert len([e for e in scan(titled.html) if e.tag == "script"]) == 2

        evil = SCRIPT + '<img src=x onerror="alert(1)">'
        async with env.client.stream(page.stream_url) as stream:
            await first_event(stream)
            await env.set("bob", name=evil)
            many = await stream.wait_for("many", lambda html: "onerror" in html)
            assert [e.tag for e in scan(many)] == ["ul", "li"]
            assert "<script" not in many and "<img" not in many
            assert people_in(many) == [("bob", evil, "red", "41")]
            everyone = await stream.next_fragment("everyone")
            assert not [e for e in scan(everyone) if e.tag in ("script", "img")]
            assert [r[1] for r in people_in(everyone)][:2] == [SCRIPT, evil]


# -- stream responses ----------------------------------------------------------------------------


async def test_stream_response_headers(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(dash_path())
        assert page.headers["content-type"].startswith("text/html")
        async with env.client.stream(page.stream_url) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers.get_list("cache-control") == ["no-store"]
            assert stream.headers.get_list("x-accel-buffering") == ["no"]


# -- route plumbing ------------------------------------------------------------------------------


async def test_parameters_and_dependencies_reach_page_and_stream(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        path = dash_path(pid="bob", ids="cy", team="blue", label="hello")
        page = await env.client.page(path, headers={"X-User": "zoe"})
        assert "<title>acme zoe hello</title>" in page.html
        assert people_in(page.fragments["one"]) == rows(await env.acme.get(Person, "bob"))
        query = {"key": ACME_KEY, "pid": "bob", "ids": "cy", "team": "blue", "label": "hello"}
        assert env.seen == [Seen("dash", False, "acme", query, "zoe")]
        assert env.auth_calls == ["acme"]

        async with env.client.stream(page.stream_url, headers={"X-User": "zoe"}) as stream:
            await first_event(stream)
            assert env.seen[1:] == [Seen("dash", True, "acme", query, "zoe")]
            assert env.auth_calls == ["acme", "acme"]
            # The stream's session follows the path's tenant and the query's pid.
            await env.set("bob", age=44)
            one = await stream.next_fragment("one")
            assert people_in(one) == [("bob", "Bob", "red", "44")]

        # A stream whose URL names another tenant runs the same authorization: 403, no data.
        other = page.stream_url.replace("/t/acme/", "/t/globex/")
        async with env.client.stream(other) as stream:
            assert stream.status_code == 403
            assert stream.body is not None and "Globex" not in stream.body
            assert stream.messages == []
        assert env.auth_calls[-1] == "globex"
        await eventually(lambda: env.hub().sessions == 0)


async def test_a_route_returning_a_response_is_passed_through(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        response = await env.client.http.get(f"/t/acme/away?key={ACME_KEY}")
        assert response.status_code == 303
        assert response.headers["location"] == f"/t/acme/dash?key={ACME_KEY}"

        async with env.client.stream(f"/t/acme/away?key={ACME_KEY}") as stream:
            assert stream.status_code == 303
            assert stream.headers["location"] == f"/t/acme/dash?key={ACME_KEY}"
            assert not stream.is_event_stream
        assert [seen.streaming for seen in env.seen] == [False, True]
        # The stream request's session had synced a label: it let go of its watches.
        await eventually(lambda: env.hub().sessions == 0)
        assert env.hub().storage_watches == 0


async def test_a_label_without_a_block_is_a_fragment_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as env:
        response = await env.client.http.get("/broken/noblock")
        assert response.status_code == 500
        assert response.text.startswith("FragmentError: ")
        assert "label 'ghost'" in response.text
        assert "template 'dash.html' has no block 'ghost'" in response.text

        # The stream answers, then ends with the error logged; it holds nothing after.
        with caplog.at_level(logging.WARNING, logger="fdbsync.web"):
            async with env.client.stream("/broken/noblock") as stream:
                assert stream.status_code == 200
                await stream.ended(WITHIN_S)
                assert stream.messages == []
        errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
        assert any(isinstance(e, FragmentError) and "'ghost'" in str(e) for e in errors)
        await eventually(lambda: env.hub().sessions == 0)


async def test_a_block_without_its_target_is_a_fragment_error(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        response = await env.client.http.get("/broken/notarget")
        assert response.status_code == 500
        assert response.text.startswith("FragmentError: ")
        assert "label 'one'" in response.text
        assert "block 'one' of 'notarget.html'" in response.text
        assert "live.target('one')" in response.text


async def test_fragments_mapped_to_a_block_a_template_a_function_and_none(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        page = await env.client.page(f"/t/acme/mapped?key={ACME_KEY}&ids=bob,cy")
        assert people_in(page.fragments["one_alt"]) == rows(await env.acme.get(Person, "ada"))
        assert page.fragments["everyone"].endswith(">4</b>")

        # An unknown token: the connect sends every fragment the labels map to.
        async with env.client.stream(f"/t/acme/mapped?key={ACME_KEY}&ids=bob,cy") as stream:
            assert await next_message_names(stream, 0) == {"one_alt", "everyone", "many"}
            fragments = stream.messages[0].fragments
            # Another block, named after the block.
            assert fragments["one_alt"].startswith('<section id="fdbsync-one_alt"')
            assert people_in(fragments["one_alt"]) == rows(await env.acme.get(Person, "ada"))
            # Another template, named after the label.
            assert fragments["everyone"] == '<b id="fdbsync-everyone">4</b>'
            # A function.
            assert fragments["many"].startswith('<ol id="fdbsync-many">')
            assert [(r[0], r[1]) for r in people_in(fragments["many"])] == [
                ("bob", "Bob"),
                ("cy", "Cy"),
            ]

            # A red newcomer changes `everyone` and `team`; `team` maps to no fragment.
            await env.acme.insert(Person(id="eve", name="Eve", email="eve@acme.test"))
            count = len(await env.acme.all(Person))
            assert count == 5
            await stream.wait_for("everyone", lambda html: html.endswith(f">{count}</b>"))
            await env.set("cy", name="Cyrus")
            many = await stream.wait_for("many", lambda html: "Cyrus" in html)
            assert [r[1] for r in people_in(many)] == ["Bob", "Cyrus"]
            await env.set("ada", age=1)
            one = await stream.wait_for("one_alt", lambda html: 'data-age="1"' in html)
            assert people_in(one) == [("ada", "Ada", "red", "1")]
            assert all("team" not in m.fragments for m in stream.messages)
            assert all("one" not in m.fragments for m in stream.messages)


async def test_a_page_with_an_empty_many_label(tmp_path: Path) -> None:
    """`sync_many(label, Model, [])` assigns an empty list, so a fragment function (or any
    template that indexes the context) can read the label, on the page and on the stream."""
    async with running(tmp_path) as env:
        response = await env.client.http.get(f"/t/acme/mapped?key={ACME_KEY}&ids=")
        assert response.status_code == 200, response.text[:300]
        async with env.client.stream(f"/t/acme/mapped?key={ACME_KEY}&ids=") as stream:
            many = await stream.next_fragment("many")
            assert people_in(many) == []
