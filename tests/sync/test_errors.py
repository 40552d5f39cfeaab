"""Failures end only the sessions they concern; closing a session lets go of everything."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from data.models import Person, person
from engine.committed import pending_watches

from fdbsync.data import Query, Repo
from fdbsync.engine import Engine, Limits
from fdbsync.sync import LiveSession, SharedRead, SyncError, WatchHub, WatchLimitError
from fdbsync.testing import eventually

from .helpers import WITHIN_S, Consumer, apply_next, close, next_change


class Boom(Exception):
    pass


async def test_a_raising_callback_ends_only_its_session(
    repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    ada = people[0]

    def explode(session: LiveSession, old: dict[str, Any]) -> None:
        raise Boom("callback failed")

    doomed, other = LiveSession(repo), LiveSession(repo)
    for page in (doomed, other):
        await page.sync_one("me", Person, ada.id)
        await page.sync_all("everyone", Person)
    doomed.attach_callback("explode", "handle_assigns", explode)
    bystander = Consumer(other)
    changes = doomed.updates()

    await repo.update(ada, {"name": "ada 2"})
    with pytest.raises(SyncError) as raised:
        await next_change(changes)
    assert isinstance(raised.value.__cause__, Boom)
    assert raised.value.label in ("me", "everyone")
    assert not doomed.watching("me")
    assert not doomed.watching("everyone")
    with pytest.raises(SyncError):
        await doomed.sync_one("me", Person, ada.id)  # closed

    await eventually(lambda: other.assigns["me"].name == "ada 2")
    stats = hub.stats()
    assert (stats.keys, stats.storage_watches, stats.reads, stats.subscriptions) == (2, 2, 2, 2)
    await repo.update(ada, {"name": "ada 3"})
    await repo.insert(person("eve"))
    await eventually(
        lambda: other.assigns["me"].name == "ada 3" and len(other.assigns["everyone"]) == 5
    )
    assert not bystander.task.done()
    assert hub.stats().subscriptions == 2
    await bystander.stop()
    assert hub.stats().subscriptions == 0


async def test_a_failed_reread_ends_only_the_sessions_on_that_read(
    repo: Repo, people: list[Person], hub: WatchHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-read of the red team's query fails (the data layer's `all` raises for it):
    both sessions showing it end with SyncError; the blue team's session goes on."""
    reds, blues = Query(Person).where(team="red"), Query(Person).where(team="blue")
    failing = False
    original = Repo.all

    async def all_unless_red(self: Repo, source: Any, **kwargs: Any) -> Any:
        if failing and source == reds:
            raise Boom("cannot read the red team")
        return await original(self, source, **kwargs)

    monkeypatch.setattr(Repo, "all", all_unless_red)
    red_pages = [LiveSession(repo), LiveSession(repo)]
    for page in red_pages:
        await page.sync_all("reds", Query(Person).where(team="red"))
    blue_page = LiveSession(repo)
    await blue_page.sync_all("blues", blues)
    await blue_page.sync_one("dee", Person, people[3].id)
    assert hub.stats().reads == 3

    failing = True
    red_changes = [page.updates() for page in red_pages]
    await repo.insert(person("rex", team="red"))
    for changes in red_changes:
        with pytest.raises(SyncError) as raised:
            await next_change(changes)
        assert raised.value.label == "reds"
        assert isinstance(raised.value.__cause__, Boom)
    assert all(not page.watching("reds") for page in red_pages)
    stats = hub.stats()
    assert (stats.keys, stats.reads, stats.subscriptions) == (2, 2, 2)

    blue_changes = blue_page.updates()
    await repo.insert(person("bea", team="blue"))
    assert await next_change(blue_changes) == {"blues"}
    assert [p.name for p in blue_page.assigns["blues"]] == ["bea", "dee"]
    await close(blue_changes)

    failing = False  # the hub still serves new sessions on the red query
    async with LiveSession(repo) as page:
        await page.sync_all("reds", reds)
        assert len(page.assigns["reds"]) == 4


@pytest.mark.parametrize("limits", [Limits(max_watches=2)])
async def test_a_refused_rearm_ends_the_sessions_on_that_key(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub, limits: Limits
) -> None:
    """While ada's watch is being re-armed, another user of the engine takes the watch it
    freed: the engine refuses the re-arm, and the session on ada ends (nothing would tell it
    of changes any more) with SyncError caused by WatchLimitError; the session on bob goes
    on."""
    ada, bob = people[0], people[1]
    outside: list[Any] = []

    async def take_the_slot(reads: list[SharedRead]) -> None:
        if not outside:
            outside.append(await repo.watch(Person, "elsewhere"))

    on_ada, on_bob = LiveSession(repo), LiveSession(repo)
    await on_ada.sync_one("me", Person, ada.id)
    await on_bob.sync_one("me", Person, bob.id)
    hub.after_reread = take_the_slot
    ada_changes = on_ada.updates()
    await repo.update(ada, {"name": "ada 2"})
    with pytest.raises(SyncError) as raised:
        await next_change(ada_changes)
    assert isinstance(raised.value.__cause__, WatchLimitError)
    assert not on_ada.watching("me")
    assert pending_watches(engine) == 2  # bob's, and the outside one
    outside[0].cancel()

    bob_changes = on_bob.updates()
    await repo.update(bob, {"name": "bob 2"})
    assert await next_change(bob_changes) == {"me"}
    assert on_bob.assigns["me"].name == "bob 2"
    await close(bob_changes)
    assert hub.stats().keys == 0


async def test_a_failed_tenant_ends_only_its_sessions(
    root: Repo, acme: Repo, globex: Repo, hub: WatchHub
) -> None:
    """Deleting tenant acme under live pages: its sessions end with SyncError, globex's go
    on."""
    ada = await acme.insert(person("ada"))
    gus = await globex.insert(person("gus"))
    acme_page = LiveSession(root, private={"tenant": "acme"})
    await acme_page.sync_one("me", Person, ada.id)
    await acme_page.sync_all("everyone", Person)
    globex_page = LiveSession(root, private={"tenant": "globex"})
    await globex_page.sync_one("me", Person, gus.id)

    acme_changes = acme_page.updates()
    await root.tenants.delete("acme")
    with pytest.raises(SyncError):
        await next_change(acme_changes)
    assert not acme_page.watching("me")

    globex_changes = globex_page.updates()
    await globex.update(gus, {"name": "gus 2"})
    assert await next_change(globex_changes) == {"me"}
    assert globex_page.assigns["me"].name == "gus 2"
    await close(globex_changes)
    assert hub.stats().subscriptions == 0


async def test_cancelling_the_updates_task_releases_every_watch(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    """The task running `async for changed in session.updates()` is cancelled (the client
    went away): the session's watches go at once; the key it shares with another stays."""
    ada, bob, cy, _ = people
    other = LiveSession(repo)
    await other.sync_one("me", Person, ada.id)
    page = LiveSession(repo)
    await page.sync_one("me", Person, ada.id)
    await page.sync_many("pair", Person, [bob.id, cy.id])
    await page.sync_all("everyone", Person)
    await page.sync_all_by("reds", Person, {"team": "red"})
    assert hub.stats().keys == 5
    assert pending_watches(engine) == 5
    started = asyncio.Event()

    async def follow() -> None:
        started.set()
        async for _ in page.updates():
            pass

    task = asyncio.create_task(follow())
    await asyncio.wait_for(started.wait(), WITHIN_S)  # and waiting in next_ready()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = hub.stats()
    assert (stats.keys, stats.storage_watches, stats.reads, stats.subscriptions) == (1, 1, 1, 1)
    assert not any(page.watching(label) for label in ("me", "pair", "everyone", "reds"))
    await eventually(lambda: pending_watches(engine) == 1)

    await repo.update(ada, {"name": "ada 2"})
    await apply_next(other)
    assert other.assigns["me"].name == "ada 2"
    other.close()
    assert hub.stats().keys == 0
    await eventually(lambda: pending_watches(engine) == 0)


async def test_leaving_updates_closes_the_session(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    """Breaking out of `async for ... in updates()` closes the session once the generator
    is finalized; closing again is harmless and a closed session syncs no more."""
    ada = people[0]
    page = LiveSession(repo)
    await page.sync_one("me", Person, ada.id)
    await page.sync_all("everyone", Person)
    await repo.update(ada, {"name": "ada 2"})
    async for changed in page.updates():
        assert "me" in changed
        break
    assert page.assigns["me"].name == "ada 2"
    await eventually(lambda: hub.stats().keys == 0)
    assert hub.stats().subscriptions == 0
    await eventually(lambda: pending_watches(engine) == 0)
    page.close()
    with pytest.raises(SyncError):
        await page.sync_one("me", Person, ada.id)
    assert hub.stats().keys == 0
