"""SchemaMetadata: what each write adds to the five counters, globally and per team, and the
watches on counters and records.

Counters are (inserts, deletes, collection, updates, changes). A write adds to them:

    write                          global           the team it leaves   the team it enters
    insert / upsert that inserts   I C Ch           -                    I C Ch
    update, team unchanged         U Ch             -                    U Ch (its team)
    replacing upsert (a change)    U Ch             -                    U Ch (its team)
    update moving to another team  U Ch             D C U Ch             I C U Ch
    delete                         D C Ch           D C Ch               -
    a write that changes nothing   -                -                    -
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import astuple

import pytest

from fdbsync.data import Counters, MissingIndexError, Repo

from .models import Blob, Everything, Person

TEAMS = ("red", "blue")
NONE = Counters()
INSERTED = Counters(inserts=1, collection=1, changes=1)
DELETED = Counters(deletes=1, collection=1, changes=1)
UPDATED = Counters(updates=1, changes=1)
LEFT = Counters(deletes=1, collection=1, updates=1, changes=1)
ENTERED = Counters(inserts=1, collection=1, updates=1, changes=1)


def alice(**changes: object) -> Person:
    fields: dict[str, object] = {"id": "alice", "name": "Alice", "email": "a@x.test"}
    return Person(**{**fields, "team": "red", **changes})


async def snapshot(repo: Repo) -> dict[str, Counters]:
    found = {"global": await repo.counters(Person)}
    for team in TEAMS:
        found[team] = await repo.counters(Person, {"team": team})
    return found


def delta(after: Counters, before: Counters) -> Counters:
    return Counters(*(a - b for a, b in zip(astuple(after), astuple(before), strict=True)))


Write = Callable[[Repo], Awaitable[object]]


async def insert(repo: Repo) -> object:
    return await repo.insert(alice())


async def upsert_inserting(repo: Repo) -> object:
    return await repo.upsert(alice())


async def update_name(repo: Repo) -> object:
    return await repo.update(alice(), {"name": "Alicia"})


async def upsert_replacing(repo: Repo) -> object:
    return await repo.upsert(alice(name="Alicia"))


async def update_team(repo: Repo) -> object:
    return await repo.update(alice(), {"team": "blue"})


async def upsert_moving(repo: Repo) -> object:
    return await repo.upsert(alice(team="blue"))


async def delete(repo: Repo) -> object:
    return await repo.delete(alice())


async def upsert_nothing(repo: Repo) -> object:
    stored = await repo.upsert(alice(name="Alicia", team="blue"), on_conflict="nothing")
    assert stored == alice()
    return stored


async def update_unchanged(repo: Repo) -> object:
    await repo.update(alice(), {"name": "Alice", "team": "red"})
    return await repo.update(alice())


async def upsert_identical(repo: Repo) -> object:
    return await repo.upsert(alice())


# (write, whether Alice is stored in red before it, expected deltas: global, red, blue)
TABLE: list[tuple[Write, bool, Counters, Counters, Counters]] = [
    (insert, False, INSERTED, INSERTED, NONE),
    (upsert_inserting, False, INSERTED, INSERTED, NONE),
    (update_name, True, UPDATED, UPDATED, NONE),
    (upsert_replacing, True, UPDATED, UPDATED, NONE),
    (update_team, True, UPDATED, LEFT, ENTERED),
    (upsert_moving, True, UPDATED, LEFT, ENTERED),
    (delete, True, DELETED, DELETED, NONE),
    (upsert_nothing, True, NONE, NONE, NONE),
    (update_unchanged, True, NONE, NONE, NONE),
    (upsert_identical, True, NONE, NONE, NONE),
]


@pytest.mark.parametrize(
    ("write", "stored", "total", "red", "blue"), TABLE, ids=[row[0].__name__ for row in TABLE]
)
async def test_what_each_write_counts(
    repo: Repo, write: Write, stored: bool, total: Counters, red: Counters, blue: Counters
) -> None:
    # Another person in each team, so no counter starts at zero.
    await repo.insert_all(
        [Person(id=f"o-{t}", name="Other", email=f"{t}@x.test", team=t) for t in TEAMS]
    )
    if stored:
        await repo.insert(alice())
    before = await snapshot(repo)
    await write(repo)
    after = await snapshot(repo)
    assert delta(after["global"], before["global"]) == total
    assert delta(after["red"], before["red"]) == red
    assert delta(after["blue"], before["blue"]) == blue


async def test_counters_of_a_red_blue_red_round_trip(repo: Repo) -> None:
    """Alice is inserted in red, moves to blue, back to red, and is deleted."""
    steps: list[tuple[Write, dict[str, Counters]]] = [
        (
            insert,
            {
                "red": Counters(inserts=1, deletes=0, collection=1, updates=0, changes=1),
                "blue": Counters(inserts=0, deletes=0, collection=0, updates=0, changes=0),
                "global": Counters(inserts=1, deletes=0, collection=1, updates=0, changes=1),
            },
        ),
        (
            lambda r: r.update(alice(), {"team": "blue"}),
            {
                "red": Counters(inserts=1, deletes=1, collection=2, updates=1, changes=2),
                "blue": Counters(inserts=1, deletes=0, collection=1, updates=1, changes=1),
                "global": Counters(inserts=1, deletes=0, collection=1, updates=1, changes=2),
            },
        ),
        (
            lambda r: r.update(alice(team="blue"), {"team": "red"}),
            {
                "red": Counters(inserts=2, deletes=1, collection=3, updates=2, changes=3),
                "blue": Counters(inserts=1, deletes=1, collection=2, updates=2, changes=2),
                "global": Counters(inserts=1, deletes=0, collection=1, updates=2, changes=3),
            },
        ),
        (
            delete,
            {
                "red": Counters(inserts=2, deletes=2, collection=4, updates=2, changes=4),
                "blue": Counters(inserts=1, deletes=1, collection=2, updates=2, changes=2),
                "global": Counters(inserts=1, deletes=1, collection=2, updates=2, changes=4),
            },
        ),
    ]
    assert await snapshot(repo) == {"global": NONE, "red": NONE, "blue": NONE}
    for number, (write, expected) in enumerate(steps, 1):
        await write(repo)
        assert await snapshot(repo) == expected, f"after step {number}"


async def test_counters_are_per_tenant(acme: Repo, globex: Repo) -> None:
    await acme.insert(alice())
    await globex.insert_all([alice(), alice(id="bob", team="blue")])
    await globex.update(alice(), {"team": "blue"})
    assert await acme.counters(Person) == INSERTED
    assert await acme.counters(Person, {"team": "red"}) == INSERTED
    assert await acme.counters(Person, {"team": "blue"}) == NONE
    assert await globex.counters(Person) == Counters(inserts=2, collection=2, updates=1, changes=3)
    assert await globex.counters(Person, {"team": "blue"}) == Counters(
        inserts=2, collection=2, updates=1, changes=2
    )


async def test_an_insert_all_counts_every_record(repo: Repo) -> None:
    await repo.insert_all([alice(id=f"p{n}", team=TEAMS[n % 2]) for n in range(5)])
    assert await repo.counters(Person) == Counters(inserts=5, collection=5, changes=5)
    assert await repo.counters(Person, {"team": "red"}) == Counters(
        inserts=3, collection=3, changes=3
    )
    assert await repo.counters(Person, {"team": "blue"}) == Counters(
        inserts=2, collection=2, changes=2
    )


# -- watches -------------------------------------------------------------------------------


async def test_a_changes_watch_fires_on_insert(repo: Repo) -> None:
    watch = await repo.watch_counter(Person, "changes")
    assert not watch.done()
    await repo.insert(alice())
    await asyncio.wait_for(watch, 5)
    assert watch.done()


async def test_a_team_inserts_watch_fires_only_for_its_team(repo: Repo) -> None:
    watch = asyncio.ensure_future(await repo.watch_counter(Person, "inserts", {"team": "red"}))
    await repo.insert(alice(id="bob", team="blue"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(watch), 0.3)
    assert not watch.done()
    await repo.insert(alice())
    await asyncio.wait_for(watch, 5)


async def test_a_record_watch_fires_when_the_record_is_created(repo: Repo) -> None:
    watch = await repo.watch(Person, "alice")
    assert not watch.done()
    await repo.insert(alice())
    await asyncio.wait_for(watch, 5)


async def test_a_record_watch_fires_on_update_and_on_delete(repo: Repo) -> None:
    await repo.insert(alice())
    on_update = await repo.watch(Person, "alice")
    await repo.update(alice(), {"name": "Alicia"})
    await asyncio.wait_for(on_update, 5)
    on_delete = await repo.watch(Person, "alice")
    await repo.delete_by_key(Person, "alice")
    await asyncio.wait_for(on_delete, 5)


async def test_counter_watches_need_a_matching_schema_metadata(repo: Repo) -> None:
    with pytest.raises(MissingIndexError):
        await repo.watch_counter(Everything, "changes")
    with pytest.raises(MissingIndexError):
        await repo.counters(Everything)
    with pytest.raises(MissingIndexError):
        await repo.watch_counter(Person, "changes", {"email": "a@x.test"})
    with pytest.raises(MissingIndexError):
        await repo.watch_counter(Blob, "inserts", {"data": b""})


@pytest.mark.parametrize("counter", ["insert", "Changes", "", "count"])
async def test_an_unknown_counter_name_is_a_value_error(repo: Repo, counter: str) -> None:
    with pytest.raises(ValueError, match="counter"):
        await repo.watch_counter(Person, counter)
    with pytest.raises(ValueError, match="counter"):
        await repo.watch_counter(Person, counter, {"team": "red"})
