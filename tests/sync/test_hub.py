"""The watch hub: one storage watch per key, one re-read per change, nothing left behind,
convergence under bursts, coalescing, and the watch limit."""

from __future__ import annotations

import asyncio
import time

import pytest
from data.models import Person, person
from engine.committed import pending_watches

from fdbsync.data import Query, Repo
from fdbsync.engine import Engine, Limits
from fdbsync.sync import All, LiveSession, Many, One, SharedRead, WatchHub, WatchLimitError
from fdbsync.testing import eventually

from .helpers import WITHIN_S, Consumer, apply_next, close, next_change, nothing_comes


def held(hub: WatchHub) -> tuple[int, int, int, int]:
    """What the hub holds: storage watches, keys, reads, subscriptions."""
    stats = hub.stats()
    return stats.storage_watches, stats.keys, stats.reads, stats.subscriptions


async def test_many_sessions_on_one_record_share_one_storage_watch(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    ada = people[0]
    sessions = [LiveSession(repo) for _ in range(1000)]
    await asyncio.gather(*(page.sync_one("me", Person, ada.id) for page in sessions))
    assert held(hub) == (1, 1, 1, 1000)
    assert hub.stats().sessions == 1000
    assert pending_watches(engine) == 1

    await repo.update(ada, {"name": "ada 2"})
    await asyncio.gather(*(apply_next(page) for page in sessions))
    assert all(page.assigns["me"].name == "ada 2" for page in sessions)
    stats = hub.stats()
    assert stats.rereads == 1
    assert stats.storage_watches == 1  # re-armed once, for all of them
    for page in sessions:
        page.close()
    assert held(hub) == (0, 0, 0, 0)
    assert hub.stats().sessions == 0
    await eventually(lambda: pending_watches(engine) == 0)


async def test_equal_queries_built_apart_are_read_once_per_change(
    repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    sessions = [LiveSession(repo) for _ in range(1000)]
    await asyncio.gather(
        *(page.sync_all("reds", Query(Person).where(team="red")) for page in sessions)
    )
    assert held(hub) == (1, 1, 1, 1000)
    for round in range(1, 4):
        await repo.insert(person(f"new {round}"))
        await eventually(lambda round=round: hub.stats().rereads >= round)  # type: ignore[misc]
        assert hub.stats().rereads == round
    await asyncio.gather(*(apply_next(page) for page in sessions))
    expected = await repo.all_by(Person, {"team": "red"})
    assert len(expected) == 6
    assert all(page.assigns["reds"] == expected for page in sessions)
    assert hub.stats().rereads == 3
    for page in sessions:
        page.close()


async def test_subscribe_cancel_cycles_and_renders_leave_nothing(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    """10,000 subscribe/cancel cycles (cancel, and session close) and 1,000 plain renders."""
    ids = [p.id for p in people]
    started = time.monotonic()

    async def cycle(n: int) -> None:
        if n % 2:
            page = LiveSession(repo)
            await page.sync_one("me", Person, ids[n % len(ids)])
            await page.cancel("me")
        else:
            async with LiveSession(repo) as page:
                await page.sync(
                    [
                        Many("some", Person, ids[: 1 + n % len(ids)]),
                        All("reds", Query(Person).where(team="red")),
                    ]
                )

    for batch in range(100):
        await asyncio.gather(*(cycle(batch * 100 + n) for n in range(100)))
    renders = [LiveSession(repo, watch=False) for _ in range(1000)]
    await asyncio.gather(*(page.sync_all("everyone", Person) for page in renders))
    elapsed = time.monotonic() - started

    assert held(hub) == (0, 0, 0, 0)
    assert hub.stats().sessions == 0
    await eventually(lambda: pending_watches(engine) == 0)
    assert all(len(page.assigns["everyone"]) == 4 for page in renders)
    assert elapsed < 30, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("limits", [Limits(max_watches=2)])
async def test_sessions_count_only_those_holding_a_label(
    repo: Repo, people: list[Person], hub: WatchHub, limits: Limits
) -> None:
    """HubStats.sessions counts live sessions holding at least one label: not one whose
    labels are all cancelled, nor one whose sync failed, while the page objects live on."""
    cancelled = LiveSession(repo)
    await cancelled.sync_one("me", Person, people[0].id)
    assert hub.stats().sessions == 1
    await cancelled.cancel("me")
    after_cancel = hub.stats().sessions

    outside = await repo.watch(Person, "elsewhere")
    refused = LiveSession(repo)
    with pytest.raises(WatchLimitError):  # the engine refuses the second watch
        await refused.sync_many("pair", Person, [people[0].id, people[1].id])
    after_refusal = hub.stats().sessions
    outside.cancel()

    assert not cancelled.watching("me")
    assert not refused.watching("pair")
    assert (after_cancel, after_refusal) == (0, 0)


async def test_a_plain_render_assigns_but_holds_nothing(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    ada = people[0]
    page = LiveSession(repo, watch=False)
    await page.sync_one("me", Person, ada.id)
    await page.sync_many("pair", Person, [ada.id, people[1].id])
    await page.sync_all_by("blues", Person, {"team": "blue"})
    assert page.assigns["me"] == ada
    assert [p.name for p in page.assigns["pair"]] == ["ada", "bob"]
    assert [p.name for p in page.assigns["blues"]] == ["dee"]
    assert held(hub) == (0, 0, 0, 0)
    assert pending_watches(engine) == 0


@pytest.mark.parametrize("concurrent", [False, True], ids=["sequential", "concurrent"])
async def test_every_session_converges_after_a_burst(
    repo: Repo, people: list[Person], hub: WatchHub, concurrent: bool
) -> None:
    """50 sessions, 200 writes: each session ends showing what the database holds."""
    ada = people[0]
    consumers = []
    for n in range(50):
        page = LiveSession(repo)
        await page.sync([])
        await page.sync_one("me", Person, ada.id)
        await page.sync_all("everyone", Person)
        if n % 2:
            await page.sync_all_by("reds", Person, {"team": "red"})
        consumers.append(Consumer(page))

    async def write(n: int) -> None:
        if n % 4 == 0:
            await repo.insert(person(f"p{n}", team="red" if n % 8 else "blue"))
        else:
            await repo.update(ada, {"name": f"ada {n}", "age": n})

    if concurrent:
        await asyncio.gather(*(write(n) for n in range(200)))
    else:
        for n in range(200):
            await write(n)
    everyone = await repo.all(Person)
    me = await repo.get(Person, ada.id)
    reds = await repo.all_by(Person, {"team": "red"})
    assert len(everyone) == 54

    def converged(consumer: Consumer) -> bool:
        assigns = consumer.session.assigns
        return bool(
            assigns["me"] == me
            and assigns["everyone"] == everyone
            and assigns.get("reds", reds) == reds
        )

    await eventually(lambda: all(converged(c) for c in consumers), within=10)
    assert all(not c.task.done() for c in consumers)
    for consumer in consumers:
        await consumer.stop()
    assert held(hub) == (0, 0, 0, 0)


async def test_fires_during_a_reread_cost_one_more_reread(
    repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    """The coalescing rule: 50 writes made while a re-read runs cause one more re-read, not
    50, and the session ends on the last write."""
    ada = people[0]
    entered = asyncio.Event()
    release = asyncio.Event()
    hooked = 0

    async def hold_first(reads: list[SharedRead]) -> None:
        nonlocal hooked
        hooked += 1
        if hooked == 1:
            entered.set()
            await release.wait()

    hub.after_reread = hold_first
    async with LiveSession(repo) as page:
        await page.sync_one("me", Person, ada.id)
        await repo.update(ada, {"name": "ada 0"})
        await asyncio.wait_for(entered.wait(), WITHIN_S)
        for n in range(1, 51):
            await repo.update(ada, {"name": f"ada {n}"})
        assert hub.stats().rereads == 0  # the first re-read is still held in the hook
        release.set()
        await eventually(lambda: hub.stats().rereads >= 2)
        assert hub.stats().rereads == 2
        while page.assigns["me"].name != "ada 50":
            await apply_next(page)
        await nothing_comes(page)
        assert hub.stats().rereads == 2
        assert hooked == 2
        assert page.assigns["me"] == await repo.get(Person, ada.id)


@pytest.mark.parametrize("limits", [Limits(max_watches=3)])
async def test_sessions_past_the_watch_limit_fail_and_others_go_on(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub, limits: Limits
) -> None:
    ada, bob, cy, dee = people
    async with LiveSession(repo) as live:
        await live.sync_one("a", Person, ada.id)
        await live.sync_many("ab", Person, [ada.id, bob.id])
        assert hub.stats().keys == 2
        before = held(hub)

        newcomer = LiveSession(repo)
        with pytest.raises(WatchLimitError):
            await newcomer.sync_many("others", Person, [cy.id, dee.id])
        with pytest.raises(WatchLimitError):
            await newcomer.sync([One("c", Person, cy.id), All("all", Person)])
        assert not newcomer.watching("others")
        assert "others" not in newcomer.assigns
        assert held(hub) == before
        assert pending_watches(engine) == 2

        async with LiveSession(repo) as sharer:  # keys already watched cost nothing
            await sharer.sync_many("ba", Person, [bob.id, ada.id])
            await sharer.sync_one("c", Person, cy.id)  # the third and last watch
            assert hub.stats().storage_watches == 3
            with pytest.raises(WatchLimitError):
                await newcomer.sync_one("d", Person, dee.id)

        changes = live.updates()
        await repo.update(ada, {"name": "ada 2"})
        assert await next_change(changes) == {"a", "ab"}
        await repo.update(bob, {"name": "bob 2"})
        assert await next_change(changes) == {"ab"}
        assert [p.name for p in live.assigns["ab"]] == ["ada 2", "bob 2"]
        await close(changes)

    async with LiveSession(repo) as later:  # watches freed by others are free again
        await later.sync_many("three", Person, [bob.id, cy.id, dee.id])
        assert hub.stats().storage_watches == 3


@pytest.mark.parametrize("limits", [Limits(max_watches=3)])
async def test_watches_refused_by_the_engine_fail_the_session_cleanly(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub, limits: Limits
) -> None:
    """Watches armed outside the hub count against the engine's limit: a session whose
    watches the engine refuses (FDB error 1032) fails with WatchLimitError and holds
    nothing, and one within the limit still works."""
    ada, bob, cy, _ = people
    outside = [await repo.watch(Person, "x1"), await repo.watch(Person, "x2")]
    assert pending_watches(engine) == 2
    page = LiveSession(repo)
    with pytest.raises(WatchLimitError):
        await page.sync_many("pair", Person, [ada.id, bob.id])
    assert held(hub) == (0, 0, 0, 0)
    await eventually(lambda: pending_watches(engine) == 2)
    assert not page.watching("pair")

    async with LiveSession(repo) as fits:
        await fits.sync_one("c", Person, cy.id)
        changes = fits.updates()
        await repo.update(cy, {"name": "cy 2"})
        assert await next_change(changes) == {"c"}
        assert fits.assigns["c"].name == "cy 2"
        await close(changes)
    for watch in outside:
        watch.cancel()


async def test_syncs_cancelled_midway_leave_nothing(
    engine: Engine, repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    """A page closed while its first sync is still reading (the client left at once): the
    sync's task is cancelled at every stage of its transaction, and nothing stays behind."""
    ids = [p.id for p in people]
    for n in range(300):
        page = LiveSession(repo)
        task = asyncio.create_task(page.sync([One("me", Person, ids[n % 4]), All("all", Person)]))
        for _ in range(n % 30):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        page.close()
    assert held(hub) == (0, 0, 0, 0)
    await eventually(lambda: pending_watches(engine) == 0)
