"""Moving tenants between revisions: builds, drops, data migrations, and opening tenants."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from data.models import Person, person

from fdbsync.data import Repo
from fdbsync.engine import Engine
from fdbsync.migrate import History, MigrationRequiredError, Migrator

from .conftest import PEOPLE, UPPER, Write


async def keyspace(engine: Engine) -> dict[bytes, bytes]:
    rows = await engine.create_transaction().get_range(b"", b"\xff").to_list()
    return {row.key: row.value for row in rows}


def data_keys(space: dict[bytes, bytes], tenant: Repo) -> dict[bytes, bytes]:
    """The tenant's keys outside its system section."""
    prefix, system = tenant.keyspace.prefix, tenant.keyspace.key("s")
    return {k: v for k, v in space.items() if k.startswith(prefix) and not k.startswith(system)}


@pytest.fixture
def history(folder: Path, write: Write) -> History:
    write("a1.py", PEOPLE)
    write("b2.py", UPPER)
    return History.load(folder)


async def filled(root: Repo, name: str = "acme", count: int = 10) -> Repo:
    tenant = await root.tenants.create(name)
    await tenant.insert_all(
        [person(f"p{i:02}", team="red" if i % 2 else "blue") for i in range(count)]
    )
    return tenant


async def test_upgrade_builds_and_migrates_then_downgrade_leaves_no_stray_keys(
    engine: Engine, root: Repo, history: History
) -> None:
    acme = await filled(root)
    before = await keyspace(engine)
    migrator = Migrator(root, history, batch_size=4)
    assert await migrator.upgrade(acme) == ["a1", "b2"]
    assert await migrator.current(acme) == "b2"
    assert set((await acme.index_states(Person)).values()) == {"ready"}
    reds = await acme.all_by(Person, {"team": "red"})
    assert [p.name for p in reds] == [f"P{i:02}" for i in range(1, 10, 2)]

    assert await migrator.downgrade(acme, "base") == ["b2", "a1"]
    assert await migrator.current(acme) is None
    assert set((await acme.index_states(Person)).values()) == {None}
    after = await keyspace(engine)
    # Writers had kept the declared indexes' entries before any migration; the downgrade
    # dropped them, so only the records (upper-cased by b2) and their own keys remain.
    records = acme.keyspace.key("r")
    assert {k for k in data_keys(after, acme) if not k.startswith(records)} == set()
    assert {k for k in data_keys(after, acme)} == {
        k for k in data_keys(before, acme) if k.startswith(records)
    }
    assert await migrator.upgrade(acme) == ["a1", "b2"]  # and up again, from scratch
    assert len(await acme.all_by(Person, {"team": "blue"})) == 5


async def test_a_data_migration_runs_once_per_batch_across_concurrent_migrators(
    engine: Engine, root: Repo, history: History
) -> None:
    acme = await filled(root, count=20)
    calls: list[str] = history.get("b2").upgrade.__globals__["calls"]
    calls.clear()
    await asyncio.gather(*(Migrator(root, history, batch_size=5).upgrade(acme) for _ in range(4)))
    ids = [p.id for p in await acme.all(Person)]
    # A batch retried after a conflict calls the function again, but only one run commits:
    # every record ends upper-cased once (a second application would be harmless here, so
    # the count of distinct committed results is what matters) and the cursor is done.
    assert sorted(set(calls)) == sorted(ids)
    assert all(p.name == p.name.upper() for p in await acme.all(Person))
    assert await Migrator(root, history).current(acme) == "b2"


FAILS_ONCE = """
revision = "b2"
down_revision = "a1"
calls = []
failed = []

def upgrade(op):
    def up(person):
        calls.append(person.id)
        if person.name == "p07" and not failed:
            failed.append(person.id)
            raise RuntimeError("boom")
        person.name = person.name.upper()
        return person
    op.migrate_data("people", up, batch_size=3)

def downgrade(op):
    pass
"""


async def test_a_failed_data_migration_resumes_from_its_cursor(
    folder: Path, write: Write, root: Repo
) -> None:
    write("a1.py", PEOPLE)
    write("b2.py", FAILS_ONCE)
    history = History.load(folder)
    calls: list[str] = history.get("b2").upgrade.__globals__["calls"]
    acme = await filled(root, count=12)
    migrator = Migrator(root, history, batch_size=3)
    with pytest.raises(RuntimeError, match="boom"):
        await migrator.upgrade(acme)
    assert await migrator.current(acme) == "a1"  # b2 unfinished
    first_run = list(calls)
    calls.clear()
    assert await migrator.upgrade(acme) == ["b2"]
    # The batches committed before the failure (p00-p05) are not visited again.
    names = {p.id: p.name for p in await acme.all(Person)}
    assert all(name == name.upper() for name in names.values())
    resumed = {names[i] for i in calls}
    assert resumed == {f"P{i:02}" for i in range(6, 12)}
    assert len(first_run) >= 7


async def test_opening_a_tenant_upgrades_it_or_refuses_it(
    engine: Engine, root: Repo, history: History
) -> None:
    await filled(root)
    migrator = Migrator(root, history)
    migrator.attach(upgrade=False)
    with pytest.raises(MigrationRequiredError, match="tenant 'acme' is at revision None"):
        await root.tenants.open("acme")
    migrator.attach(upgrade=True)
    acme = await root.tenants.open("acme")
    assert await migrator.current(acme) == "b2"
    migrator.attach(upgrade=False)
    assert (await root.tenants.open("acme")).tenant == "acme"  # at head: served


def test_schema_metadata_with_a_custom_name_can_be_created_and_dropped() -> None:
    from fdbsync.migrate import CreateIndex, DropIndex, Operations

    op = Operations()
    op.create_schema_metadata("people", by=("team",), name="per_team")
    op.drop_schema_metadata("people", name="per_team")
    assert op.planned == [CreateIndex("people", "per_team"), DropIndex("people", "per_team", "m")]


def data_migration(source: str, body: str, batch_size: int | None = None) -> str:
    """A revision "d1" (first in its folder) whose data migration runs `body` on each record
    `r` and returns it."""
    size = "" if batch_size is None else f", batch_size={batch_size}"
    return f"""
revision = "d1"
down_revision = None

def upgrade(op):
    def change(r):
        {body}
        return r
    op.migrate_data({source!r}, change{size})

def downgrade(op):
    pass
"""


@pytest.mark.parametrize("how", ["upgrade", "open"])
async def test_concurrent_migrators_apply_a_non_idempotent_migration_once(
    folder: Path, write: Write, root: Repo, how: str
) -> None:
    """Two upgrades of one tenant at once (or two openings with attach()): the migration
    appends "!", so applying any batch twice would show as "!!"."""
    write("d1.py", data_migration("people", 'r.name = r.name + "!"', batch_size=3))
    history = History.load(folder)
    acme = await filled(root, count=12)
    if how == "upgrade":
        await asyncio.gather(*(Migrator(root, history).upgrade(acme) for _ in range(2)))
    else:
        Migrator(root, history).attach()
        await asyncio.gather(root.tenants.open("acme"), root.tenants.open("acme"))
    names = [p.name for p in await acme.all(Person)]
    assert names == [f"p{i:02}!" for i in range(12)]
    assert await Migrator(root, history).current(acme) == "d1"


async def test_data_migration_batches_stay_inside_a_transaction(
    folder: Path, write: Write, root: Repo
) -> None:
    """600 records of 40 KB under the default 500-key batches would rewrite 20 MB in one
    transaction (over its 10 MB): batches also end at a byte budget."""
    from data.models import Everything

    write("d1.py", data_migration("everything", "r.number = 1"))
    acme = await root.tenants.create("acme")
    for start in range(0, 600, 100):
        await acme.insert_all(
            [Everything(key=i, text="x" * 40_000 + str(i)) for i in range(start, start + 100)]
        )
    await Migrator(root, History.load(folder)).upgrade(acme)
    assert {e.number for e in await acme.all(Everything)} == {1}


async def test_a_data_migration_may_change_lists_in_place(
    folder: Path, write: Write, root: Repo
) -> None:
    from data.models import Everything

    write("d1.py", data_migration("everything", 'r.tags.append("migrated")'))
    acme = await root.tenants.create("acme")
    await acme.insert_all([Everything(key=i, tags=["a"]) for i in range(5)])
    await Migrator(root, History.load(folder)).upgrade(acme)
    assert [e.tags for e in await acme.all(Everything)] == [["a", "migrated"]] * 5
