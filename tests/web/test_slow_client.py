"""A client that stops reading while one label changes 10,000 times.

The fragment is padded to about 80 KB, so the socket buffers between server and client fill
after a few messages and the server's sends block. While they do, the server must hold at most
one pending fragment per label (the message in flight), render only when the response asks
for the next message, and, once the client reads again, send the state at that moment: the
client ends with the final state after far fewer than 10,000 fragments.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re

import jinja2
import pytest
from fastapi import FastAPI
from fastapi.templating import Jinja2Templates

from fdbsync import testing
from fdbsync.data import Model, Repo, SchemaMetadata
from fdbsync.engine import Engine
from fdbsync.sync import LiveSession
from fdbsync.testing import ClientStream, LiveClient, serve
from fdbsync.web import LiveStream, LiveSync, live_sync

#: Server-side conditions have no event to await; these can take a while in a browser.
eventually = functools.partial(testing.eventually, within=10.0)


SLOTS = 20
UPDATES_PER_SLOT = 500
CHANGES = SLOTS * UPDATES_PER_SLOT  # 10,000 commits, each one a new state of the label
PAD = 80_000  # bytes of padding per fragment

PAGE = """<!doctype html>
<html><head>{{ live.scripts() }}</head><body>
{{ live.stream() }}
{% block board %}<section {{ live.target("board") }} data-total="{{ slots | sum(attribute='n') }}">
{% for s in slots %}<b data-slot="{{ s.id }}">{{ s.n }}</b>{% endfor %}
<p>{{ slots[0].note }}</p>
<pre>{{ pad }}</pre>
</section>{% endblock %}
</body></html>
"""


class Slot(Model, source="slots", indexes=[SchemaMetadata()]):
    id: int
    n: int = 0
    note: str = ""


def total(html: str) -> int:
    found = re.search(r'data-total="(\d+)"', html)
    assert found is not None, html[:300]
    return int(found.group(1))


def counts(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<b data-slot="\d+">(\d+)</b>', html)]


def boards(stream: ClientStream) -> list[str]:
    """The board fragments the client has received, in order (a message without fragments,
    such as one that only sets the reconnection time, holds none)."""
    return [m.fragments["board"] for m in stream.messages if "board" in m.fragments]


@pytest.mark.slow
async def test_a_paused_client_gets_the_latest_state_after_10000_changes(engine: Engine) -> None:
    repo = Repo(engine, models=[Slot])
    await repo.build_indexes(Slot)
    slots = await repo.insert_all([Slot(id=i) for i in range(SLOTS)])

    env = jinja2.Environment(loader=jinja2.DictLoader({"board.html": PAGE}), autoescape=True)
    # A long send timeout: the paused client must not be dropped as dead during the test.
    live = LiveSync(repo, Jinja2Templates(env=env), send_timeout=300, stream_lifetime=3600)
    app = FastAPI(lifespan=live.lifespan)

    @app.get("/board")
    @live_sync("board.html", fragments={"slots": "board"})
    async def board(session: LiveSession) -> None:
        session.assigns["pad"] = "p" * PAD
        await session.sync_all("slots", Slot)

    async with serve(app) as server, LiveClient(server.url) as client:
        page = await client.page("/board")
        assert total(page.fragments["board"]) == 0
        async with client.stream(page.stream_url) as stream:
            assert stream.status_code == 200
            # The stream works: a change arrives while the client reads.
            await repo.update(slots[0], {"note": "ready"})
            html = await stream.wait_for("board", lambda html: "ready" in html, timeout=10)
            assert len(html) > PAD
            (server_side,) = live.streams
            assert isinstance(server_side, LiveStream)
            before = server_side.messages
            assert len(boards(stream)) == before == 1

            stream.pause()

            async def writer(slot: Slot) -> None:
                for _ in range(UPDATES_PER_SLOT):
                    slot = await repo.update(slot, {"n": slot.n + 1})

            fresh = await repo.all(Slot)
            await asyncio.gather(*(writer(slot) for slot in fresh))
            assert sum(slot.n for slot in await repo.all(Slot)) == CHANGES

            # The server's sends are blocked on the full socket: one message in flight, with
            # one fragment for the one label, and nothing else queued for this client.
            await eventually(lambda: server_side.pending == 1, "the server's send blocking")
            assert server_side.max_pending == 1
            sent_while_paused = server_side.messages - before
            assert 1 <= sent_while_paused < CHANGES // 20, sent_while_paused
            # The client has not read them: it still shows the state from before the pause.
            assert len(boards(stream)) < server_side.messages
            assert total(stream.latest["board"]) == 0

            stream.resume()
            final = await stream.wait_for("board", lambda html: total(html) == CHANGES, timeout=30)
            assert counts(final) == [UPDATES_PER_SLOT] * SLOTS
            assert "ready" in final

            # Coalesced: a few hundred fragments at most for 10,000 changes, each one a
            # consistent snapshot no older than the one before it.
            received = boards(stream)
            assert len(received) == server_side.messages
            assert len(received) < CHANGES // 20, len(received)
            for earlier, later in itertools.pairwise(received):
                assert all(a <= b for a, b in zip(counts(earlier), counts(later), strict=True))
            assert server_side.max_pending == 1
            stats = live.stats()
            assert stats.streams == 1
            assert stats.messages == server_side.messages
            assert stats.fragments == server_side.messages  # one fragment per message
            # Renders: the page's, the first connect's (to compare with what the page shows),
            # and one per message sent.
            assert stats.renders <= server_side.messages + 2
            assert stats.renders < CHANGES // 20
