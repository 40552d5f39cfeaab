"""Races between first reads, closing and re-reads (each of these failed before its fix)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from data.models import Person

from fdbsync.data import Repo
from fdbsync.sync import LiveSession, SyncError, WatchHub

from .helpers import WITHIN_S


async def test_a_session_closed_while_its_sync_reads_holds_nothing(
    repo: Repo, people: list[Person], hub: WatchHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's updates() task is cancelled (the session closes) while an event handler is
    in the middle of a sync: what that sync acquired is released when its read returns."""
    ada = people[0]
    reading, go_on = asyncio.Event(), asyncio.Event()
    load = WatchHub.load

    async def held_load(self: WatchHub, *args: Any) -> Any:
        loaded = await load(self, *args)
        reading.set()
        await go_on.wait()
        return loaded

    monkeypatch.setattr(WatchHub, "load", held_load)
    page = LiveSession(repo)
    syncing = asyncio.create_task(page.sync_one("ada", Person, ada.id))
    await asyncio.wait_for(reading.wait(), WITHIN_S)
    page.close()
    go_on.set()
    with pytest.raises(SyncError, match="closed"):
        await asyncio.wait_for(syncing, WITHIN_S)
    stats = hub.stats()
    assert (stats.sessions, stats.reads, stats.keys, stats.storage_watches) == (0, 0, 0, 0)


async def test_a_waiting_consumer_ends_when_the_session_closes(
    repo: Repo, people: list[Person]
) -> None:
    page = LiveSession(repo)
    await page.sync_one("ada", Person, people[0].id)
    changes: list[set[str]] = []

    async def consume() -> None:
        async for changed in page.updates():
            changes.append(changed)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let it start waiting
    page.close()
    await asyncio.wait_for(consumer, WITHIN_S)  # ends, instead of waiting forever
    assert changes == []


async def test_a_many_label_synced_again_is_one_snapshot(repo: Repo, people: list[Person]) -> None:
    """The page shows [ada]; one transaction renames ada and bob; the page syncs [ada, bob]
    before ada's watch is handled. Keeping ada's old result next to bob's new one would show
    half of that transaction."""
    ada, bob = people[0], people[1]
    async with LiveSession(repo) as page:
        await page.sync_many("pair", Person, [ada.id])

        async def rename(tx: Repo) -> None:
            await tx.update(ada, {"name": "ada 2"})
            await tx.update(bob, {"name": "bob 2"})

        await repo.transaction(rename)
        await page.sync_many("pair", Person, [ada.id, bob.id])
        shown = [person.name for person in page.assigns["pair"]]
        assert shown in (["ada", "bob"], ["ada 2", "bob 2"]), f"half a transaction: {shown}"
