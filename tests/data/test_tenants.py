"""Tenants: the registry's operations, and isolation between tenants."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from fdbsync.data import (
    Counters,
    Query,
    Repo,
    TenancyError,
    TenantExistsError,
    TenantNotFoundError,
    TenantSpace,
    tenant_of,
)
from fdbsync.engine import (
    Engine,
    KeySelector,
    KeyValue,
    Versionstamp,
    pack_with_versionstamp,
    strinc,
)

from .models import Event, Person, person


async def every_key(engine: Engine) -> list[KeyValue]:
    return await engine.create_transaction().get_range(b"", b"\xff").to_list()


async def tenant_keys(engine: Engine, name: str) -> list[KeyValue]:
    begin, end = TenantSpace(name, engine.limits.key_size).range()
    return await engine.create_transaction().get_range(begin, end).to_list()


# -- the registry ----------------------------------------------------------------------------


async def test_create_and_open(root: Repo) -> None:
    acme = await root.tenants.create("acme")
    assert acme.tenant == "acme"
    assert await root.tenants.exists("acme")
    assert not await root.tenants.exists("globex")
    opened = await root.tenants.open("acme")
    assert opened.tenant == "acme"
    assert root.tenant is None
    ada = await acme.insert(person("ada"))
    await opened.build_indexes(Person)
    assert await opened.get(Person, ada.id) == ada
    assert await opened.all_by(Person, {"email": "ada@example.com"}) == [ada]


async def test_create_twice(root: Repo) -> None:
    acme = await root.tenants.create("acme")
    ada = await acme.insert(person("ada"))
    with pytest.raises(TenantExistsError, match="acme"):
        await root.tenants.create("acme")
    assert await root.tenants.list() == ["acme"]
    assert await acme.all(Person) == [ada]


async def test_open_missing(root: Repo) -> None:
    with pytest.raises(TenantNotFoundError, match="nobody"):
        await root.tenants.open("nobody")
    assert await root.tenants.list() == []


@pytest.mark.parametrize(
    "name", ["", "-acme", ".acme", "_acme", "a b", "a/b", "é", "x" * 101, "a\x00"]
)
async def test_bad_names(root: Repo, name: str) -> None:
    calls: list[Callable[[str], Awaitable[object]]] = [
        root.tenants.create,
        root.tenants.open,
        root.tenants.exists,
        root.tenants.clear,
        root.tenants.delete,
    ]
    for call in calls:
        with pytest.raises(TenancyError, match="tenant name"):
            await call(name)
    assert await root.tenants.list() == []
    assert await every_key(root.engine) == []


async def test_non_string_name(root: Repo) -> None:
    with pytest.raises(TenancyError):
        await root.tenants.create(42)  # type: ignore[arg-type]


async def test_longest_name(root: Repo) -> None:
    name = "a" + "b-._9" * 19 + "cdef"
    assert len(name) == 100
    tenant = await root.tenants.create(name)
    assert await root.tenants.list() == [name]
    assert await tenant.insert(person("ada")) is not None


async def test_list_is_sorted(root: Repo) -> None:
    for name in ("globex", "Acme", "acme", "initech", "9lives", "a.b"):
        await root.tenants.create(name)
    assert await root.tenants.list() == sorted(
        ["globex", "Acme", "acme", "initech", "9lives", "a.b"]
    )


async def test_clear_empties_the_tenant_but_keeps_it(acme: Repo, globex: Repo, root: Repo) -> None:
    await acme.insert_all([person("ada", team="blue"), person("bob")])
    await acme.insert(Event(kind="boot"))
    await acme.transaction(lambda tx: _set_user_key(tx, b"mine"))
    bob_g = await globex.insert(person("bob"))

    await root.tenants.clear("acme")

    assert await root.tenants.exists("acme")
    assert await root.tenants.list() == ["acme", "globex"]
    assert await acme.all(Person) == []
    assert await acme.all(Event) == []
    assert await acme.all_by(Person, {"email": "ada@example.com"}) == []
    assert await acme.all_by(Person, {"team": "blue"}) == []
    assert await acme.all_by(Event, {"kind": "boot"}) == []
    assert await acme.counters(Person) == Counters()
    assert await acme.counters(Person, {"team": "blue"}) == Counters()
    assert await acme.counters(Event) == Counters()
    assert await acme.transaction(_get_user_key) is None
    assert set((await acme.index_states(Person)).values()) == {"ready"}

    ada = await acme.insert(person("ada"))
    assert await acme.all_by(Person, {"email": "ada@example.com"}) == [ada]
    assert await acme.counters(Person) == Counters(inserts=1, collection=1, changes=1)

    assert await globex.all(Person) == [bob_g]
    assert (await globex.counters(Person)).inserts == 1


async def test_clear_missing_tenant(root: Repo) -> None:
    with pytest.raises(TenantNotFoundError):
        await root.tenants.clear("nobody")
    with pytest.raises(TenantNotFoundError):
        await root.tenants.delete("nobody")


async def test_delete_removes_everything(acme: Repo, globex: Repo, root: Repo) -> None:
    await acme.insert_all([person("ada"), person("bob")])
    await acme.transaction(lambda tx: _set_user_key(tx, b"mine"))
    bob_g = await globex.insert(person("bob"))

    await root.tenants.delete("acme")

    assert not await root.tenants.exists("acme")
    assert await root.tenants.list() == ["globex"]
    with pytest.raises(TenantNotFoundError):
        await root.tenants.open("acme")
    assert await tenant_keys(root.engine, "acme") == []
    assert await globex.all(Person) == [bob_g]

    again = await root.tenants.create("acme")
    assert await again.all(Person) == []
    assert await again.counters(Person) == Counters()
    assert set((await again.index_states(Person)).values()) == {None}
    await again.build_indexes(Person)
    assert await again.all_by(Person, {"email": "ada@example.com"}) == []


async def _set_user_key(tx: Repo, value: bytes) -> None:
    tx.transaction_handle.set(tx.keyspace.user("flag"), value)


async def _get_user_key(tx: Repo) -> bytes | None:
    return await tx.transaction_handle.get(tx.keyspace.user("flag"))


# -- isolation -------------------------------------------------------------------------------


async def test_same_primary_key_in_two_tenants(acme: Repo, globex: Repo) -> None:
    a = await acme.insert(Person(id="same", name="acme ada", email="ada@acme.example.com"))
    g = await globex.insert(Person(id="same", name="globex ada", email="ada@globex.example.com"))
    assert await acme.get(Person, "same") == a
    assert await globex.get(Person, "same") == g
    assert a != g
    await acme.update(a, {"age": 40})
    got_g = await globex.get(Person, "same")
    assert got_g is not None and got_g.age is None
    await acme.delete(a)
    assert await acme.get(Person, "same") is None
    assert await globex.get(Person, "same") == g


async def test_reads_and_counters_see_only_their_tenant(acme: Repo, globex: Repo) -> None:
    mine = await acme.insert_all([person("ada", team="blue"), person("bob", team="red")])
    theirs = await globex.insert_all(
        [person("ada", team="blue"), person("cy", team="blue"), person("dee", team="red")]
    )
    await globex.delete(theirs[2])

    assert await acme.all(Person) == mine
    assert await globex.all(Person) == theirs[:2]
    assert await acme.all_by(Person, {"team": "blue"}) == [mine[0]]
    assert await globex.all_by(Person, {"team": "blue"}) == theirs[:2]
    assert await acme.all_by(Person, {"email": "ada@example.com"}) == [mine[0]]
    assert await globex.all_by(Person, {"email": "cy@example.com"}) == [theirs[1]]
    assert await acme.all_by(Person, {"email": "cy@example.com"}) == []
    assert await acme.get_by(Person, {"email": "ada@example.com"}) == mine[0]
    assert [r async for r in acme.stream(Query(Person, {"team": "blue"}), page_size=1)] == [mine[0]]
    assert await acme.counters(Person) == Counters(inserts=2, collection=2, changes=2)
    assert await globex.counters(Person) == Counters(inserts=3, deletes=1, collection=4, changes=4)
    assert (await acme.counters(Person, {"team": "blue"})).inserts == 1
    assert (await globex.counters(Person, {"team": "blue"})).inserts == 2
    assert all(tenant_of(r) == "acme" for r in await acme.all(Person))
    assert all(tenant_of(r) == "globex" for r in await globex.all(Person))


async def test_raw_access_cannot_reach_another_tenant(acme: Repo, globex: Repo) -> None:
    """tx.transaction_handle in acme refuses globex's keys for every read, write, watch and
    conflict range; the refusals leave globex untouched, and acme's own raw access and
    records still commit with the transaction."""
    secret = await globex.insert(person("secret"))
    await globex.transaction(lambda tx: _set_user_key(tx, b"globex"))
    theirs = globex.keyspace.key("r", "people", secret.id)
    their_flag = globex.keyspace.user("flag")
    assert await globex.engine.create_transaction().get(theirs) is not None
    begin, end = globex.keyspace.range()
    stamped = pack_with_versionstamp(("u", Versionstamp()), globex.keyspace.prefix)
    one = (1).to_bytes(8, "little")
    globex_before = await tenant_keys(globex.engine, "globex")

    async def snoop(tx: Repo) -> bytes | None:
        raw = tx.transaction_handle
        mine = tx.keyspace.user("flag")
        reads: list[Callable[[], Awaitable[object]]] = [
            lambda: raw.get(theirs),
            lambda: raw.get_many([mine, theirs]),
            lambda: raw.snapshot.get(theirs),
            lambda: raw.get_range(begin, end).to_list(),
            lambda: raw.get_range(tx.keyspace.prefix, end).to_list(),
            lambda: raw.get_key(KeySelector.first_greater_or_equal(theirs)),
        ]
        for read in reads:
            with pytest.raises(TenancyError, match="outside tenant 'acme'"):
                await read()
        writes: list[Callable[[], object]] = [
            lambda: raw.set(theirs, b"acme was here"),
            lambda: raw.set(their_flag, b"acme was here"),
            lambda: raw.clear(theirs),
            lambda: raw.clear_range(begin, end),
            lambda: raw.clear_range(tx.keyspace.prefix, end),
            lambda: raw.add(their_flag, one),
            lambda: raw.max(their_flag, one),
            lambda: raw.compare_and_clear(their_flag, b"globex"),
            lambda: raw.set_versionstamped_key(stamped, b"acme was here"),
            lambda: raw.set_versionstamped_value(their_flag, bytes(10) + bytes(4)),
            lambda: raw.watch(their_flag),
            lambda: raw.add_read_conflict_range(begin, end),
            lambda: raw.add_read_conflict_key(theirs),
            lambda: raw.add_write_conflict_range(begin, end),
        ]
        for write in writes:
            with pytest.raises(TenancyError, match="outside tenant 'acme'"):
                write()
        raw.set(mine, b"acme")
        raw.add(tx.keyspace.user("visits"), one)
        raw.add_read_conflict_key(mine)
        await tx.insert(person("ada"))
        return await raw.get(mine)

    assert await acme.transaction(snoop) == b"acme"
    assert await tenant_keys(globex.engine, "globex") == globex_before
    assert await globex.all(Person) == [secret]
    assert await globex.transaction(_get_user_key) == b"globex"
    assert await acme.transaction(_get_user_key) == b"acme"
    assert [p.name for p in await acme.all(Person)] == ["ada"]


async def test_key_selectors_resolve_inside_the_tenant(acme: Repo, globex: Repo) -> None:
    """A selector that would land outside the tenant stops at the tenant's edge; a selector
    on another tenant's key is refused."""
    await acme.transaction(lambda tx: _set_user_key(tx, b"acme"))
    await globex.transaction(lambda tx: _set_user_key(tx, b"globex"))
    begin, end = acme.keyspace.range()
    assert end == strinc(acme.keyspace.prefix)
    mine = acme.keyspace.user("flag")
    first_of_globex = (await tenant_keys(globex.engine, "globex"))[0].key
    assert mine < end <= first_of_globex  # "flag" is acme's last key; globex comes next

    async def resolve(tx: Repo) -> None:
        raw = tx.transaction_handle
        assert await raw.get_key(KeySelector.first_greater_or_equal(mine)) == mine
        assert await raw.get_key(KeySelector.first_greater_than(mine)) == end
        assert await raw.get_key(KeySelector.first_greater_or_equal(begin) + 10_000) == end
        assert await raw.get_key(KeySelector.last_less_than(begin)) == begin
        assert await raw.snapshot.get_key(KeySelector.first_greater_than(mine)) == end
        rows = await raw.get_range(
            KeySelector.first_greater_or_equal(begin), KeySelector.first_greater_than(mine) + 5
        ).to_list()
        assert rows and rows[-1].key == mine
        assert all(kv.key.startswith(acme.keyspace.prefix) for kv in rows)
        assert await raw.get_range(KeySelector.first_greater_than(mine), end).to_list() == []
        with pytest.raises(TenancyError, match="outside tenant 'acme'"):
            await raw.get_key(KeySelector.last_less_than(first_of_globex))

    await acme.transaction(resolve)


async def test_record_from_one_tenant_cannot_be_written_to_another(
    acme: Repo, globex: Repo
) -> None:
    ada = await acme.insert(Person(id="same", name="ada", email="ada@example.com"))
    local = await globex.insert(Person(id="same", name="local", email="local@example.com"))
    read = await acme.get(Person, "same")
    assert read is not None
    before = await globex.counters(Person)

    with pytest.raises(TenancyError, match="acme"):
        await globex.update(read, {"name": "stolen"})
    with pytest.raises(TenancyError, match="acme"):
        await globex.update(read)
    with pytest.raises(TenancyError, match="acme"):
        await globex.delete(read)
    with pytest.raises(TenancyError, match="acme"):
        await globex.upsert(read)
    with pytest.raises(TenancyError, match="acme"):
        await globex.upsert(read, on_conflict="nothing")
    await globex.delete(local)
    after_delete = await globex.counters(Person)
    with pytest.raises(TenancyError, match="acme"):
        await globex.insert(read)
    with pytest.raises(TenancyError, match="acme"):
        await globex.insert_all([person("new"), read])

    assert await globex.all(Person) == []
    assert await globex.counters(Person) == after_delete
    assert after_delete.deletes == before.deletes + 1
    assert await acme.all(Person) == [ada]


async def test_record_returned_by_update_cannot_be_written_to_another_tenant(
    acme: Repo, globex: Repo
) -> None:
    ada = await acme.insert(Person(id="same", name="ada", email="ada@example.com"))
    updated = await acme.update(ada, {"age": 36})
    with pytest.raises(TenancyError, match="acme"):
        await globex.insert(updated)
    assert await globex.all(Person) == []


async def test_a_new_record_can_go_to_any_tenant(acme: Repo, globex: Repo) -> None:
    fresh = person("ada")
    a = await acme.insert(fresh)
    g = await globex.insert(fresh)
    assert tenant_of(a) == "acme" and tenant_of(g) == "globex"
    assert tenant_of(fresh) is None


async def test_root_refuses_data_calls(root: Repo) -> None:
    ada = person("ada")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: root.get(Person, "x"),
        lambda: root.get_many(Person, ["x"]),
        lambda: root.get_by(Person, {"email": "x"}),
        lambda: root.all(Person),
        lambda: root.all_by(Person, {"team": "red"}),
        lambda: root.insert(ada),
        lambda: root.insert_all([ada]),
        lambda: root.upsert(ada),
        lambda: root.update(ada, {"age": 1}),
        lambda: root.delete(ada),
        lambda: root.delete_by_key(Person, "x"),
        lambda: root.counters(Person),
        lambda: root.watch(Person, "x"),
        lambda: root.watch_counter(Person),
        lambda: root.index_states(Person),
        lambda: root.build_indexes(Person),
        lambda: root.transaction(lambda tx: tx.get(Person, "x")),
    ]
    for call in calls:
        with pytest.raises(TenancyError, match="multi-tenant"):
            await call()
    with pytest.raises(TenancyError):
        [r async for r in root.stream(Person)]
    with pytest.raises(TenancyError):
        root.keyspace  # noqa: B018
    assert await every_key(root.engine) == []


async def test_single_tenant_repo_has_no_tenants(repo: Repo) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: repo.tenants.create("acme"),
        lambda: repo.tenants.open("acme"),
        lambda: repo.tenants.exists("acme"),
        lambda: repo.tenants.list(),
        lambda: repo.tenants.clear("acme"),
        lambda: repo.tenants.delete("acme"),
    ]
    for call in calls:
        with pytest.raises(TenancyError, match="single-tenant"):
            await call()
    assert repo.tenant == ""
    assert await tenant_keys(repo.engine, "acme") == []


async def test_writes_to_a_deleted_tenant(acme: Repo, root: Repo) -> None:
    ada = await acme.insert(person("ada"))
    await root.tenants.delete("acme")
    assert await every_key(root.engine) == []

    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: acme.insert(person("bob")),
        lambda: acme.insert(Event(kind="boot")),
        lambda: acme.insert_all([person("cy"), person("dee")]),
        lambda: acme.upsert(ada),
        lambda: acme.upsert(person("eve"), on_conflict="nothing"),
        lambda: acme.build_indexes(Person),
    ]
    for write in writes:
        with pytest.raises(TenancyError, match="acme"):
            await write()
    assert await every_key(root.engine) == []
    assert not await root.tenants.exists("acme")


async def test_update_and_delete_in_a_deleted_tenant(acme: Repo, root: Repo) -> None:
    """The record went with its tenant; the error names the tenant, not a missing record."""
    ada = await acme.insert(person("ada"))
    await root.tenants.delete("acme")
    with pytest.raises(TenancyError, match="acme"):
        await acme.update(ada, {"age": 1})
    with pytest.raises(TenancyError, match="acme"):
        await acme.delete(ada)
    assert await every_key(root.engine) == []


async def test_raw_writes_in_a_transaction_of_a_deleted_tenant(acme: Repo, root: Repo) -> None:
    """Keys written through tx.keyspace.user(...) belong to the tenant too: none may outlive it."""
    await root.tenants.delete("acme")
    with pytest.raises(TenancyError, match="acme"):
        await acme.transaction(lambda tx: _set_user_key(tx, b"x"))
    assert await every_key(root.engine) == []
