"""Several labels synced together are one snapshot: a transaction that changes two of them is
seen wholly or not at all, on the first read and after every fire."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from data.models import Person

from fdbsync.data import Query, Repo
from fdbsync.sync import All, Label, LiveSession, Many, One, WatchHub
from fdbsync.testing import eventually

from .helpers import WITHIN_S, Consumer, apply_next

#: The two labels a writer's transactions change.
PAIRS = {"one+many": ("one", "many"), "one+all": ("one", "all"), "many+all": ("many", "all")}
#: What each label shows of the person renamed under it, before any rename.
ORIGINAL = {"one": "ada", "many": "bob", "all": "dee"}


def labels(people: list[Person]) -> list[Label]:
    ada, bob, cy, _ = people
    return [
        One("one", Person, ada.id),
        Many("many", Person, [bob.id, cy.id]),
        All("all", Query(Person).where(team="blue")),  # dee
    ]


def tags(assigns: dict[str, Any]) -> dict[str, str]:
    """The name each label shows for the person a writer renames under it."""
    return {
        "one": assigns["one"].name,  # ada
        "many": assigns["many"][0].name,  # bob
        "all": assigns["all"][0].name,  # dee
    }


class Writer:
    """Renames the people under two labels in one transaction. `mid` is set between its two
    updates, `staged` once both are made and its commit is about to start."""

    def __init__(self, repo: Repo, people: list[Person], pair: tuple[str, str]) -> None:
        ada, bob, _, dee = people
        self.repo = repo
        self.targets = [{"one": ada, "many": bob, "all": dee}[label] for label in pair]
        self.mid = asyncio.Event()
        self.staged = asyncio.Event()

    async def write(self, tag: str) -> None:
        self.mid.clear()
        self.staged.clear()

        async def rename(tx: Repo) -> None:
            first, second = self.targets
            await tx.update(first, {"name": tag})
            self.mid.set()
            await asyncio.sleep(0)  # let a racing reader in between the two updates
            await tx.update(second, {"name": tag})
            self.staged.set()

        await self.repo.transaction(rename)


async def sync_after(
    page: LiveSession, labels: list[Label], start: asyncio.Event | None, turns: int
) -> None:
    """`page.sync(labels)` once `start` is set, `turns` turns of the event loop later."""
    if start is not None:
        await start.wait()
    for _ in range(turns):
        await asyncio.sleep(0)
    await page.sync(labels)


@pytest.mark.parametrize("pair", list(PAIRS.values()), ids=list(PAIRS))
async def test_first_read_sees_a_transaction_wholly_or_not_at_all(
    repo: Repo, people: list[Person], hub: WatchHub, pair: tuple[str, str]
) -> None:
    """sync() of three labels races a transaction that changes two of them: started with
    it, in the middle of it, or as it commits, then 1 to 256 loop turns later (on sqlite
    about a fifth of the rounds see the new names, the rest the old)."""
    writer = Writer(repo, people, pair)
    first, second = pair
    (unchanged,) = set(ORIGINAL) - set(pair)
    await writer.write("v0")
    for round in range(1, 61):
        page = LiveSession(repo)
        start = [None, writer.mid, writer.staged][round % 3]
        racing = sync_after(page, labels(people), start, turns=4 ** (round % 5))
        await asyncio.wait_for(asyncio.gather(racing, writer.write(f"v{round}")), WITHIN_S)
        seen = tags(page.assigns)
        assert seen[first] == seen[second], f"round {round}: half a transaction: {seen}"
        assert seen[first] in (f"v{round - 1}", f"v{round}")
        assert seen[unchanged] == ORIGINAL[unchanged]
        page.close()
    assert hub.stats().subscriptions == 0


@pytest.mark.parametrize("pair", list(PAIRS.values()), ids=list(PAIRS))
async def test_updates_never_show_half_a_transaction(
    repo: Repo, people: list[Person], pair: tuple[str, str]
) -> None:
    """100 such transactions while the session follows: every state it yields shows both
    renames or neither."""
    write = Writer(repo, people, pair).write
    first, second = pair
    page = LiveSession(repo)
    await page.sync(labels(people))
    consumer = Consumer(page, snapshot=tags)
    for round in range(1, 101):
        await write(f"v{round}")
        if round % 10 == 0:  # let some fires through between writes, coalesce the others
            tag = f"v{round}"
            await eventually(lambda tag=tag: tags(page.assigns)[first] == tag)  # type: ignore[misc]
    await eventually(lambda: tags(page.assigns)[first] == tags(page.assigns)[second] == "v100")
    await consumer.stop()
    assert len(consumer.snapshots) >= 10
    torn = [state for state in consumer.snapshots if state[first] != state[second]]
    assert torn == [], f"{len(torn)} of {len(consumer.snapshots)} states were torn"
    assert consumer.snapshots[-1][first] == "v100"
    assert all(changed <= set(pair) for changed in consumer.changes)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-key", "own-key"])
async def test_a_change_during_the_first_read_is_not_lost(
    repo: Repo, people: list[Person], hub: WatchHub, monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    """A session's first read sees ada before a write; the write's re-read is handed out
    while that first read is still finishing. The session must still end up showing the
    write (with `shared`, another session already watches ada, so the hub's re-read is the
    only news of it)."""
    ada = people[0]
    if shared:
        watcher = LiveSession(repo)
        await watcher.sync_one("me", Person, ada.id)
    has_read, go_on = asyncio.Event(), asyncio.Event()
    holding = True
    original = Repo.get_many

    async def get_many_then_hold(self: Repo, model: Any, primary_keys: Any) -> Any:
        found = await original(self, model, primary_keys)
        if holding:
            has_read.set()
            await go_on.wait()
        return found

    monkeypatch.setattr(Repo, "get_many", get_many_then_hold)
    page = LiveSession(repo)
    first_read = asyncio.create_task(page.sync_one("me", Person, ada.id))
    await asyncio.wait_for(has_read.wait(), WITHIN_S)
    holding = False
    await repo.update(ada, {"name": "ada 2"})
    if shared:
        await eventually(lambda: hub.stats().rereads == 1)  # handed out already
    go_on.set()
    await asyncio.wait_for(first_read, WITHIN_S)
    try:
        while page.assigns["me"].name != "ada 2":
            await apply_next(page)
    except TimeoutError:
        pytest.fail(f"the write was lost: the page still shows {page.assigns['me'].name!r}")
    finally:
        page.close()
        if shared:
            watcher.close()
    assert page.assigns["me"] == await repo.get(Person, ada.id)


async def test_a_re_read_landing_during_a_first_read_does_not_tear_the_page(
    repo: Repo, people: list[Person], hub: WatchHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session watches ada. A page syncs ada and bob; after its first read, a
    transaction renames both, and the hub's re-read of ada (for the other session) finishes
    before the page's sync does. The page must show both old names, then both new ones,
    never one of each."""
    ada, bob = people[0], people[1]
    watcher = LiveSession(repo)
    await watcher.sync_one("me", Person, ada.id)
    load = WatchHub.load

    async def load_then_rename(self: WatchHub, *args: Any) -> Any:
        loaded = await load(self, *args)
        rereads = hub.stats().rereads

        async def rename(tx: Repo) -> None:
            await tx.update(ada, {"name": "ada 2"})
            await tx.update(bob, {"name": "bob 2"})

        await repo.transaction(rename)
        await eventually(lambda: hub.stats().rereads > rereads)  # ada's, for the watcher
        return loaded

    monkeypatch.setattr(WatchHub, "load", load_then_rename)
    page = LiveSession(repo)
    await page.sync([One("ada", Person, ada.id), One("bob", Person, bob.id)])
    monkeypatch.undo()
    shown = (page.assigns["ada"].name, page.assigns["bob"].name)
    assert shown in {("ada", "bob"), ("ada 2", "bob 2")}, f"half a transaction: {shown}"
    while shown != ("ada 2", "bob 2"):
        await apply_next(page)
        shown = (page.assigns["ada"].name, page.assigns["bob"].name)
        assert shown in {("ada", "bob"), ("ada 2", "bob 2")}, f"half a transaction: {shown}"
    page.close()
    watcher.close()
