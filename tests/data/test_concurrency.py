"""Concurrent writers: conflicting transactions retry, and records, index entries and
SchemaMetadata counters all end consistent."""

from __future__ import annotations

import asyncio
from typing import Any

from fdbsync.data import Counters, DuplicateKeyError, Gte, Repo
from fdbsync.engine import Engine, pack, strinc

from .models import Person

WRITERS = 20


async def index_keys(engine: Engine, tenant: str = "") -> list[bytes]:
    begin = pack((tenant, "i"))

    async def read(tr: Any) -> list[bytes]:
        return [kv.key for kv in await tr.get_range(begin, strinc(begin)).to_list()]

    return await engine.transact(read)


async def test_concurrent_upserts_of_one_key_leave_one_record(repo: Repo, engine: Engine) -> None:
    teams = [f"team{n:02d}" for n in range(WRITERS)]
    written = await asyncio.gather(
        *(
            repo.upsert(Person(id="alice", name=f"Alice {team}", email="a@x.test", team=team))
            for team in teams
        )
    )
    assert {person.team for person in written} == set(teams)

    stored = await repo.all(Person)
    assert len(stored) == 1
    final = stored[0]
    assert final.team in teams and final.name == f"Alice {final.team}"
    assert await repo.all_by(Person, {"team": final.team}) == [final]
    assert await repo.get_by(Person, {"email": "a@x.test"}) == final
    for team in teams:
        if team != final.team:
            assert await repo.all_by(Person, {"team": team, "name": Gte("")}) == []
    assert len(await index_keys(engine)) == 2  # one entry in each Index, none stale

    # One upsert inserted; every other replaced the record with a change (its team).
    assert await repo.counters(Person) == Counters(
        inserts=1, deletes=0, collection=1, updates=WRITERS - 1, changes=WRITERS
    )
    per_team = {team: await repo.counters(Person, {"team": team}) for team in teams}
    for team, counters in per_team.items():
        assert counters.inserts - counters.deletes == (1 if team == final.team else 0), team
        assert counters.inserts == 1, team  # each team was written once, by its upsert
        assert counters.collection == counters.inserts + counters.deletes, team
    assert sum(c.inserts for c in per_team.values()) == WRITERS
    assert sum(c.deletes for c in per_team.values()) == WRITERS - 1
    # The first write inserted; each later one left one team and entered another.
    assert sum(c.updates for c in per_team.values()) == 2 * (WRITERS - 1)
    assert sum(c.changes for c in per_team.values()) == 1 + 2 * (WRITERS - 1)


async def test_concurrent_inserts_of_one_key_let_exactly_one_win(repo: Repo) -> None:
    results = await asyncio.gather(
        *(
            repo.insert(Person(id="alice", name=f"Alice {n}", email="a@x.test", team=f"t{n}"))
            for n in range(WRITERS)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, Person)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert len(lost) == WRITERS - 1
    assert all(isinstance(error, DuplicateKeyError) for error in lost), lost
    assert await repo.all(Person) == won
    assert await repo.counters(Person) == Counters(inserts=1, collection=1, changes=1)
    assert await repo.counters(Person, {"team": won[0].team}) == Counters(
        inserts=1, collection=1, changes=1
    )


async def test_concurrent_inserts_of_distinct_keys_all_land(repo: Repo, engine: Engine) -> None:
    tasks = 32
    teams = ("red", "green", "blue", "gold")
    people = [
        Person(id=f"p{n:02d}", name=f"P{n}", email=f"{n}@x.test", team=teams[n % 4])
        for n in range(tasks)
    ]
    await asyncio.gather(*(repo.insert(person) for person in people))
    assert await repo.all(Person) == people
    assert await repo.counters(Person) == Counters(inserts=tasks, collection=tasks, changes=tasks)
    for team in teams:
        count = tasks // len(teams)
        assert await repo.counters(Person, {"team": team}) == Counters(
            inserts=count, collection=count, changes=count
        )
        assert len(await repo.all_by(Person, {"team": team})) == count
    assert len(await index_keys(engine)) == 2 * tasks


async def test_concurrent_writes_in_two_tenants_stay_apart(acme: Repo, globex: Repo) -> None:
    def people(prefix: str) -> list[Person]:
        return [Person(id=f"{prefix}{n:02d}", name="N", email=f"{n}@x.test") for n in range(16)]

    await asyncio.gather(
        *(acme.insert(person) for person in people("a")),
        *(globex.insert(person) for person in people("g")),
        *(globex.upsert(person) for person in people("a")[:4]),
    )
    assert await acme.all(Person) == people("a")
    assert [p.id for p in await globex.all(Person)] == sorted(
        p.id for p in people("g") + people("a")[:4]
    )
    assert await acme.counters(Person) == Counters(inserts=16, collection=16, changes=16)
    assert await globex.counters(Person) == Counters(inserts=20, collection=20, changes=20)
