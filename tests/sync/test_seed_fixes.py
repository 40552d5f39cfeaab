"""The upstream Sync module's known bugs, fixed here (see "Lessons" in DESIGN.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from data.models import Person, person
from engine.committed import pending_watches

from fdbsync.data import Repo
from fdbsync.engine import Engine
from fdbsync.sync import LiveSession, Ready, WatchHub
from fdbsync.testing import eventually

from .helpers import apply_next, close, next_change, nothing_comes


def names(records: list[Any]) -> list[str]:
    return [record.name for record in records]


@pytest.fixture
def reads_of_ids(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every primary key the data layer's `get_many` is asked for, from here on."""
    asked: list[Any] = []
    original = Repo.get_many

    async def counted(self: Repo, model: Any, primary_keys: Sequence[Any]) -> Any:
        asked.extend(primary_keys)
        return await original(self, model, primary_keys)

    monkeypatch.setattr(Repo, "get_many", counted)
    return asked


@pytest.mark.parametrize("deleted", [False, True], ids=["missing", "deleted"])
async def test_missing_record_stays_watched_and_appears_when_created(
    repo: Repo, hub: WatchHub, deleted: bool
) -> None:
    if deleted:
        gone = await repo.insert(person("gone", id="ghost"))
        await repo.delete(gone)
    async with LiveSession(repo) as page:
        await page.sync_one("ghost", Person, "ghost")
        await page.sync_many("ghosts", Person, ["ghost"])
        assert page.assigns["ghost"] is None
        assert page.assigns["ghosts"] == []
        assert page.watching("ghost")
        assert page.watching("ghosts")
        assert hub.stats().storage_watches == 1
        changes = page.updates()
        await repo.insert(person("casper", id="ghost"))
        assert await next_change(changes) == {"ghost", "ghosts"}
        assert names([page.assigns.get("ghost")]) == ["casper"]
        assert names(page.assigns["ghosts"]) == ["casper"]
        await close(changes)


async def test_sync_many_resync_keeps_the_ids_that_stay(
    engine: Engine,
    repo: Repo,
    people: list[Person],
    hub: WatchHub,
    reads_of_ids: list[Any],
) -> None:
    """Re-syncing [ada, bob, cy] as [bob, cy, dee] reads only dee, watches exactly the new
    ids, and no longer follows ada."""
    ada, bob, cy, dee = people
    async with LiveSession(repo) as page:
        await page.sync_many("team", Person, [ada.id, bob.id, cy.id])
        assert reads_of_ids == [ada.id, bob.id, cy.id]
        before = hub.stats()
        await page.sync_many("team", Person, [bob.id, cy.id, dee.id])
        assert reads_of_ids[3:] == [dee.id]
        assert names(page.assigns["team"]) == ["bob", "cy", "dee"]
        stats = hub.stats()
        assert stats.keys == 3
        assert stats.storage_watches == 3
        assert stats.reads == 3
        assert stats.subscriptions == 3
        assert stats.rereads == before.rereads
        await eventually(lambda: pending_watches(engine) == 3)

        await repo.update(ada, {"name": "ada 2"})
        await nothing_comes(page)
        assert names(page.assigns["team"]) == ["bob", "cy", "dee"]

        changes = page.updates()
        await repo.update(bob, {"name": "bob 2"})
        assert await next_change(changes) == {"team"}
        await repo.update(dee, {"name": "dee 2"})
        assert await next_change(changes) == {"team"}
        assert names(page.assigns["team"]) == ["bob 2", "cy", "dee 2"]
        await close(changes)


async def test_sync_many_resync_keeps_current_values_of_kept_ids(
    repo: Repo, people: list[Person]
) -> None:
    """A kept id that changed before the re-sync still shows its newest value."""
    ada, bob, cy, _ = people
    async with LiveSession(repo) as page:
        await page.sync_many("team", Person, [ada.id, bob.id])
        await repo.update(bob, {"name": "bob 2"})
        await apply_next(page)
        await page.sync_many("team", Person, [bob.id, cy.id])
        assert names(page.assigns["team"]) == ["bob 2", "cy"]
        changes = page.updates()
        await repo.update(cy, {"name": "cy 2"})
        assert await next_change(changes) == {"team"}
        assert names(page.assigns["team"]) == ["bob 2", "cy 2"]
        await close(changes)


async def test_sync_many_resync_with_news_pending_for_a_kept_id(
    repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    """News for a kept id that arrived before the re-sync and was not yet applied is not
    lost: the next Ready shows it."""
    ada, bob, cy, _ = people
    async with LiveSession(repo) as page:
        await page.sync_many("team", Person, [ada.id, bob.id])
        await repo.update(bob, {"name": "bob 2"})
        await eventually(lambda: hub.stats().rereads == 1)  # delivered, not applied
        await page.sync_many("team", Person, [bob.id, cy.id])
        await apply_next(page)
        assert names(page.assigns["team"]) == ["bob 2", "cy"]


async def test_cancel_and_watching_work_for_sync_many(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    ada, bob = people[0], people[1]
    async with LiveSession(repo) as page:
        assert not page.watching("pair")
        await page.sync_many("pair", Person, [ada.id, bob.id])
        assert page.watching("pair")
        assert hub.stats().storage_watches == 2
        await page.cancel("pair")
        assert not page.watching("pair")
        assert page.assigns["pair"] == []
        stats = hub.stats()
        assert (stats.keys, stats.storage_watches, stats.reads, stats.subscriptions) == (0, 0, 0, 0)
        await eventually(lambda: pending_watches(engine) == 0)
        await repo.update(ada, {"name": "ada 2"})
        await nothing_comes(page)
        assert page.assigns["pair"] == []

        await page.sync_many("pair", Person, [ada.id, bob.id])
        await page.cancel("pair", assign=False)
        assert names(page.assigns["pair"]) == ["ada 2", "bob"]
        assert not page.watching("pair")

        await page.sync_many("pair", Person, [bob.id])
        await page.sync_many("pair", Person, [])  # an empty id list cancels too
        assert not page.watching("pair")
        assert page.assigns["pair"] == []
        assert hub.stats().keys == 0


async def test_handle_ready_takes_a_batch_and_ignores_what_is_not_its_own(
    repo: Repo, people: list[Person]
) -> None:
    ada, bob = people[0], people[1]
    calls: list[dict[str, Any]] = []

    def record(session: LiveSession, old: dict[str, Any]) -> None:
        calls.append(old)

    async with LiveSession(repo) as mine, LiveSession(repo) as theirs:
        await mine.sync_one("a", Person, ada.id)
        await mine.sync_one("b", Person, bob.id)
        await theirs.sync_one("a", Person, ada.id)
        mine.attach_callback("record", "handle_assigns", record)

        await repo.update(ada, {"name": "ada 2"})
        first = await mine.next_ready()
        theirs_ready = await theirs.next_ready()
        await repo.update(bob, {"name": "bob 2"})
        second = await mine.next_ready()
        assert isinstance(first, Ready)

        before = dict(mine.assigns)
        for other in [theirs_ready, [theirs_ready], "ready", None, 42, object(), [], [1, "x"]]:
            assert await mine.handle_ready(other) is False
        assert mine.assigns == before
        assert calls == []

        assert await mine.handle_ready([first, theirs_ready, "noise", second]) is True
        assert mine.assigns["a"].name == "ada 2"
        assert mine.assigns["b"].name == "bob 2"
        assert calls == [{"a": ada, "b": bob}]
        assert theirs.assigns["a"] == ada  # another session's Ready is applied by it alone
        assert await theirs.handle_ready((theirs_ready,)) is True
        assert theirs.assigns["a"].name == "ada 2"
