"""The upstream Sync module's scenarios, on LiveSession."""

from __future__ import annotations

from typing import Any

import pytest
from data.models import Event, Person, person

from fdbsync.data import Query, Repo, TenancyError
from fdbsync.sync import LiveSession, WatchHub

from .helpers import apply_next, close, next_change, nothing_comes


def names(records: list[Any]) -> list[str]:
    return [record.name for record in records]


async def test_sync_one_follows_an_update(repo: Repo, people: list[Person]) -> None:
    ada = people[0]
    async with LiveSession(repo) as page:
        await page.sync_one("me", Person, ada.id)
        assert page.assigns["me"] == ada
        changes = page.updates()
        await repo.update(ada, {"name": "ada lovelace"})
        assert await next_change(changes) == {"me"}
        assert page.assigns["me"].name == "ada lovelace"
        assert page.assigns["me"].id == ada.id
        await close(changes)


async def test_sync_all_grows_on_insert(repo: Repo, people: list[Person]) -> None:
    async with LiveSession(repo) as page:
        await page.sync_all("everyone", Person)
        assert page.assigns["everyone"] == await repo.all(Person)
        assert len(page.assigns["everyone"]) == 4
        changes = page.updates()
        eve = await repo.insert(person("eve"))
        assert await next_change(changes) == {"everyone"}
        assert len(page.assigns["everyone"]) == 5
        assert eve in page.assigns["everyone"]
        assert page.assigns["everyone"] == await repo.all(Person)
        await close(changes)


async def test_resync_to_another_record_stops_following_the_first(
    repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    ada, bob = people[0], people[1]
    async with LiveSession(repo) as page:
        await page.sync_one("who", Person, ada.id)
        await page.sync_one("who", Person, bob.id)
        assert page.assigns["who"] == bob
        assert hub.stats().keys == 1
        await repo.update(ada, {"name": "ada 2"})
        await nothing_comes(page)
        assert page.assigns["who"] == bob
        changes = page.updates()
        await repo.update(bob, {"name": "bob 2"})
        assert await next_change(changes) == {"who"}
        assert page.assigns["who"].name == "bob 2"
        await close(changes)


@pytest.mark.parametrize(
    ("kind", "empty"), [("one", None), ("many", []), ("all", [])], ids=["one", "many", "all"]
)
async def test_cancel_stops_following_and_assigns_empty(
    repo: Repo, people: list[Person], hub: WatchHub, kind: str, empty: Any
) -> None:
    ada = people[0]
    async with LiveSession(repo) as page:
        if kind == "one":
            await page.sync_one("x", Person, ada.id)
        elif kind == "many":
            await page.sync_many("x", Person, [ada.id])
        else:
            await page.sync_all("x", Person)
        assert page.watching("x")
        await page.cancel("x")
        assert not page.watching("x")
        assert page.assigns["x"] == empty
        assert hub.stats().keys == 0
        assert hub.stats().subscriptions == 0
        await repo.update(ada, {"name": "ada 2"})
        await nothing_comes(page)
        assert page.assigns["x"] == empty


async def test_cancel_without_assign_keeps_the_value(
    repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    ada = people[0]
    async with LiveSession(repo) as page:
        await page.sync_one("me", Person, ada.id)
        await page.sync_all("everyone", Person)
        everyone = page.assigns["everyone"]
        await page.cancel("me", assign=False)
        await page.cancel("everyone", assign=False)
        assert page.assigns["me"] == ada
        assert page.assigns["everyone"] == everyone
        assert not page.watching("me")
        assert not page.watching("everyone")
        assert hub.stats().keys == 0
        await repo.update(ada, {"name": "ada 2"})
        await nothing_comes(page)
        assert page.assigns["me"] == ada


async def test_sync_all_by_sees_inserts_for_its_value_only(
    repo: Repo, people: list[Person]
) -> None:
    async with LiveSession(repo) as page:
        await page.sync_all_by("blues", Person, {"team": "blue"})
        assert names(page.assigns["blues"]) == ["dee"]
        await repo.insert(person("rex", team="red"))
        await nothing_comes(page)
        assert names(page.assigns["blues"]) == ["dee"]
        await repo.insert(person("bea", team="blue"))
        await apply_next(page)
        assert sorted(names(page.assigns["blues"])) == ["bea", "dee"]
        assert page.assigns["blues"] == await repo.all_by(Person, {"team": "blue"})


async def test_sync_all_watch_action_chooses_the_counter(repo: Repo, people: list[Person]) -> None:
    """Watching the "inserts" counter: updates leave the label alone, inserts refresh it."""
    ada = people[0]
    async with LiveSession(repo) as page:
        await page.sync_all("everyone", Person, watch_action="inserts")
        await repo.update(ada, {"name": "ada 2"})
        await nothing_comes(page)
        assert names(page.assigns["everyone"])[0] == "ada"
        await repo.insert(person("eve"))
        await apply_next(page)
        assert page.assigns["everyone"] == await repo.all(Person)
        assert names(page.assigns["everyone"])[0] == "ada 2"


async def test_labels_sharing_a_read_are_cancelled_apart(
    repo: Repo, people: list[Person], hub: WatchHub
) -> None:
    ada = people[0]
    async with LiveSession(repo) as page:
        await page.sync_one("me", Person, ada.id)
        await page.sync_many("us", Person, [ada.id])
        await page.sync_all("a", Query(Person).where(team="red"))
        await page.sync_all("b", Query(Person, {"team": "red"}))
        assert (hub.stats().reads, hub.stats().keys) == (2, 2)
        await page.cancel("me")
        await page.cancel("a")
        assert (hub.stats().reads, hub.stats().keys) == (2, 2)
        changes = page.updates()
        await repo.update(ada, {"name": "ada 2"})
        assert await next_change(changes) == {"us", "b"}
        assert page.assigns["me"] is None
        assert names(page.assigns["us"]) == ["ada 2"]
        assert names(page.assigns["b"])[0] == "ada 2"
        await close(changes)


async def test_callbacks_run_in_order_and_false_stops_the_rest(
    repo: Repo, people: list[Person]
) -> None:
    ada = people[0]
    calls: list[tuple[str, dict[str, Any]]] = []

    def first(session: LiveSession, old: dict[str, Any]) -> bool:
        calls.append(("first", old))
        return len(calls) > 1  # False the first time

    async def second(session: LiveSession, old: dict[str, Any]) -> None:
        calls.append(("second", old))

    async with LiveSession(repo) as page:
        await page.sync_one("me", Person, ada.id)
        page.attach_callback("first", "handle_assigns", first)
        page.attach_callback("second", "handle_assigns", second)
        with pytest.raises(ValueError):
            page.attach_callback("first", "handle_assigns", second)
        changes = page.updates()
        await repo.update(ada, {"name": "ada 2"})
        await next_change(changes)
        assert calls == [("first", {"me": ada})]
        updated = page.assigns["me"]
        await repo.update(ada, {"name": "ada 3"})
        await next_change(changes)
        assert [name for name, _ in calls] == ["first", "first", "second"]
        assert calls[-1] == ("second", {"me": updated})
        page.detach_callback("first", "handle_assigns")
        page.detach_callback("second", "handle_assigns")
        await repo.update(ada, {"name": "ada 4"})
        await next_change(changes)
        assert len(calls) == 3
        await close(changes)


async def test_a_custom_assign_function_receives_the_new_values(
    repo: Repo, people: list[Person]
) -> None:
    ada = people[0]
    seen: list[dict[str, Any]] = []

    def assign(session: LiveSession, values: dict[str, Any]) -> None:
        seen.append(values)
        session.assigns.update({label: ("custom", value) for label, value in values.items()})

    async with LiveSession(repo, assign=assign) as page:
        await page.sync_one("me", Person, ada.id)
        assert page.assigns["me"] == ("custom", ada)
        await repo.update(ada, {"name": "ada 2"})
        ready = await page.next_ready()
        other: list[dict[str, Any]] = []
        assert await page.handle_ready(ready, assign=lambda s, v: other.append(v))
        assert [v["me"].name for v in other] == ["ada 2"]
        assert len(seen) == 1  # the per-call function replaced the session's
        assert page.assigns["me"] == ("custom", ada)


async def test_dependent_syncing(repo: Repo, people: list[Person]) -> None:
    """A `handle_assigns` callback syncs the records an ids collection lists: the "pins"
    (events whose kind is a person's id) drive the "pinned" people, in pin order."""
    ada, bob = people[0], people[1]
    await repo.insert(Event(kind=ada.id))
    await repo.insert(Event(kind=bob.id))

    async def follow_pins(session: LiveSession, old: dict[str, Any]) -> None:
        if "pins" in old:
            await session.sync_many("pinned", Person, [pin.kind for pin in session.assigns["pins"]])

    async with LiveSession(repo) as page:
        await page.sync_all("pins", Event)
        await page.sync_many("pinned", Person, [pin.kind for pin in page.assigns["pins"]])
        page.attach_callback("pins", "handle_assigns", follow_pins)
        assert names(page.assigns["pinned"]) == ["ada", "bob"]
        changes = page.updates()

        eve = await repo.insert(person("eve"))
        await repo.insert(Event(kind=eve.id))
        assert await next_change(changes) == {"pins", "pinned"}  # the callback synced "pinned"
        assert names(page.assigns["pinned"]) == ["ada", "bob", "eve"]

        await repo.update(eve, {"name": "eve 2"})
        assert await next_change(changes) == {"pinned"}
        assert names(page.assigns["pinned"]) == ["ada", "bob", "eve 2"]
        await repo.update(ada, {"name": "ada 2"})
        assert await next_change(changes) == {"pinned"}
        assert names(page.assigns["pinned"]) == ["ada 2", "bob", "eve 2"]
        await close(changes)


async def test_delete_assigns_none_and_recreating_brings_it_back(
    repo: Repo, people: list[Person]
) -> None:
    ada = people[0]
    async with LiveSession(repo) as page:
        await page.sync_one("me", Person, ada.id)
        changes = page.updates()
        await repo.delete(ada)
        assert await next_change(changes) == {"me"}
        assert page.assigns["me"] is None
        assert page.watching("me")
        await repo.insert(person("ada again", id=ada.id))
        assert await next_change(changes) == {"me"}
        assert names([page.assigns.get("me")]) == ["ada again"]
        await close(changes)


async def test_multi_tenant_session_needs_its_tenant(
    root: Repo, acme: Repo, hub: WatchHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without private["tenant"], or with another tenant than the repo's, sync raises
    TenancyError before reading anything."""
    ada = await acme.insert(person("ada"))
    transactions = 0
    original = Repo.transaction

    async def counted(self: Repo, *args: Any, **kwargs: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Repo, "transaction", counted)
    with pytest.raises(TenancyError):
        await LiveSession(root).sync_one("me", Person, ada.id)
    with pytest.raises(TenancyError):
        await LiveSession(acme).sync_all("everyone", Person)
    with pytest.raises(TenancyError):
        await LiveSession(acme, private={"tenant": "globex"}).sync_one("me", Person, ada.id)
    with pytest.raises(TenancyError):
        await LiveSession(root, watch=False).sync_all("everyone", Person)
    assert transactions == 0
    assert hub.stats().subscriptions == 0
    assert hub.stats().keys == 0

    async with LiveSession(root, private={"tenant": "acme"}) as page:
        await page.sync_one("me", Person, ada.id)
        assert page.assigns["me"] == ada
    assert transactions == 1


async def test_an_unknown_tenant_is_refused(root: Repo, acme: Repo, hub: WatchHub) -> None:
    page = LiveSession(root, private={"tenant": "nobody"})
    with pytest.raises(TenancyError):
        await page.sync_all("everyone", Person)
    assert not page.watching("everyone")
    assert "everyone" not in page.assigns
    stats = hub.stats()
    assert (stats.keys, stats.storage_watches, stats.reads, stats.subscriptions) == (0, 0, 0, 0)


async def test_single_tenant_repo_needs_no_tenant(repo: Repo, people: list[Person]) -> None:
    async with LiveSession(repo) as page:
        await page.sync_all("everyone", Person)
        assert page.assigns["everyone"] == await repo.all(Person)
    with pytest.raises(TenancyError):
        await LiveSession(repo, private={"tenant": "acme"}).sync_all("everyone", Person)


async def test_tenants_see_only_their_own_records(root: Repo, acme: Repo, globex: Repo) -> None:
    ada = await acme.insert(person("ada"))
    await globex.insert(person("other ada", id=ada.id))
    async with LiveSession(root, private={"tenant": "acme"}) as page:
        await page.sync([])  # nothing to sync is fine
        await page.sync_one("me", Person, ada.id)
        await page.sync_all("everyone", Query(Person))
        assert page.assigns["me"].name == "ada"
        assert names(page.assigns["everyone"]) == ["ada"]
        await globex.update(person("other ada", id=ada.id), {"name": "globex ada"})
        await globex.insert(person("gus"))
        await nothing_comes(page)
        await acme.update(ada, {"name": "ada 2"})
        await apply_next(page)
        assert page.assigns["me"].name == "ada 2"
        assert names(page.assigns["everyone"]) == ["ada 2"]
