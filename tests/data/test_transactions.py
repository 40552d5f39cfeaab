"""repo.transaction(fn): one engine transaction for every call in fn, retried on conflict."""

from __future__ import annotations

import asyncio
import gc
import math
from typing import Any

import pytest

from fdbsync.data import (
    Counters,
    DuplicateKeyError,
    Index,
    IndexValueError,
    Model,
    Repo,
    SchemaMetadata,
    ValueTooLargeError,
)
from fdbsync.engine import Engine, ErrorCode, FDBError, pack, strinc

from .models import Event, Person, person


class Reading(
    Model,
    source="test_transactions_readings",
    indexes=[Index("site"), SchemaMetadata(), Index("value")],
):
    """Its Index("value") comes after an index entry and the counters: a NaN fails the write
    half-way through computing them."""

    id: int
    site: str = "north"
    value: float = 0.0


async def raw_get(engine: Engine, key: bytes) -> bytes | None:
    return await engine.create_transaction().get(key)


async def reading_index_keys(engine: Engine) -> list[bytes]:
    begin = pack(("", "i", "test_transactions_readings"))
    found = await engine.create_transaction().get_range(begin, strinc(begin)).to_list()
    return [kv.key for kv in found]


@pytest.fixture
async def readings(engine: Engine) -> Repo:
    repo = Repo(engine, models=[Reading])
    await repo.build_indexes(Reading)
    return repo


async def test_calls_join_one_transaction(store: Repo) -> None:
    ada, bob = person("ada"), person("bob")

    async def work(tx: Repo) -> tuple[Person | None, Person | None]:
        await tx.insert(ada)
        await tx.insert(bob)
        await tx.update(ada, {"age": 36})
        # Reads inside the transaction see its own writes; outside, nothing is visible yet.
        outside = await store.get(Person, ada.id)
        return await tx.get(Person, ada.id), outside

    inside, outside = await store.transaction(work)
    assert inside is not None and inside.age == 36
    assert outside is None
    assert await store.get_many(Person, [ada.id, bob.id]) == [inside, bob]
    assert await store.counters(Person) == Counters(inserts=2, collection=2, updates=1, changes=3)


async def test_an_exception_rolls_everything_back(store: Repo) -> None:
    existing = await store.insert(person("cy"))
    before = await store.counters(Person)
    ada, bob = person("ada"), person("bob")
    key = store.keyspace.user("flag")

    async def work(tx: Repo) -> None:
        await tx.insert(ada)
        await tx.insert(bob)
        await tx.delete(existing)
        tx.transaction_handle.set(key, b"set")
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await store.transaction(work)
    assert await store.all(Person) == [existing]
    assert await store.all_by(Person, {"email": "ada@example.com"}) == []
    assert await store.counters(Person) == before
    assert await raw_get(store.engine, key) is None


async def test_a_data_error_inside_rolls_back_earlier_writes(store: Repo) -> None:
    ada = await store.insert(person("ada"))

    async def work(tx: Repo) -> None:
        await tx.insert(person("bob"))
        await tx.insert(Person(id=ada.id, name="dup", email="dup@example.com"))

    with pytest.raises(Exception, match=ada.id):
        await store.transaction(work)
    assert await store.all(Person) == [ada]


async def test_raw_key_value_access_commits_with_the_records(store: Repo) -> None:
    ada = person("ada")

    async def work(tx: Repo) -> bytes | None:
        handle = tx.transaction_handle
        handle.set(tx.keyspace.user("settings", "theme"), b"dark")
        handle.add(tx.keyspace.user("visits"), (5).to_bytes(8, "little"))
        await tx.insert(ada)
        return await handle.get(tx.keyspace.user("settings", "theme"))

    assert await store.transaction(work) == b"dark"
    assert await store.get(Person, ada.id) == ada
    engine = store.engine
    assert await raw_get(engine, store.keyspace.user("settings", "theme")) == b"dark"
    visits = await raw_get(engine, store.keyspace.user("visits"))
    assert visits is not None and int.from_bytes(visits, "little") == 5

    async def read(tx: Repo) -> bytes | None:
        return await tx.transaction_handle.get(tx.keyspace.user("settings", "theme"))

    assert await store.transaction(read) == b"dark"


async def test_the_repo_owns_the_raw_handles_commit(store: Repo) -> None:
    """The handle cannot commit, reset or cancel the transaction (nor set its retries): the
    Repo does, once `fn` returns, with everything `fn` wrote."""
    ada = person("ada")
    key = store.keyspace.user("flag")

    async def work(tx: Repo) -> None:
        raw = tx.transaction_handle
        raw.set(key, b"before")
        await tx.insert(ada)
        with pytest.raises(RuntimeError, match="Repo"):
            await raw.commit()
        with pytest.raises(RuntimeError, match="Repo"):
            raw.reset()
        with pytest.raises(RuntimeError, match="Repo"):
            raw.cancel()
        with pytest.raises(RuntimeError, match="Repo"):
            await raw.on_error(FDBError(ErrorCode.NOT_COMMITTED, "conflict"))
        with pytest.raises(RuntimeError, match="Repo"):
            raw.set_timeout(1.0)
        with pytest.raises(RuntimeError, match="Repo"):
            raw.set_retry_limit(0)
        assert await raw.get(key) == b"before"
        assert await tx.get(Person, ada.id) == ada
        raw.set(key, b"after")

    await store.transaction(work)
    assert await raw_get(store.engine, key) == b"after"
    assert await store.all(Person) == [ada]


def test_transaction_handle_needs_a_transaction(repo: Repo) -> None:
    with pytest.raises(RuntimeError, match="transaction"):
        repo.transaction_handle  # noqa: B018


async def test_user_keys_are_inside_the_tenant(acme: Repo, globex: Repo) -> None:
    assert acme.keyspace.user("x") != globex.keyspace.user("x")
    assert acme.keyspace.user("x").startswith(acme.keyspace.prefix)

    async def write(tx: Repo) -> None:
        tx.transaction_handle.set(tx.keyspace.user("x"), b"acme")

    await acme.transaction(write)
    assert await raw_get(acme.engine, acme.keyspace.user("x")) == b"acme"
    assert await raw_get(globex.engine, globex.keyspace.user("x")) is None


# -- a caught error leaves nothing of its write ---------------------------------------------


async def test_a_caught_nan_in_an_insert_leaves_nothing_of_it(readings: Repo) -> None:
    """The application catches the IndexValueError and commits: the failed insert wrote no
    record, no Index("site") entry and no counters, though they come before the failure."""

    async def work(tx: Repo) -> Reading:
        with pytest.raises(IndexValueError, match=r"Reading\.value"):
            await tx.insert(Reading(id=1, value=math.nan))
        return await tx.insert(Reading(id=2, value=2.0))

    two = await readings.transaction(work)
    assert await readings.get(Reading, 1) is None
    assert await readings.all(Reading) == [two]
    assert await readings.all_by(Reading, {"site": "north"}) == [two]
    assert await readings.counters(Reading) == Counters(inserts=1, collection=1, changes=1)
    assert len(await reading_index_keys(readings.engine)) == 2  # two's site and value


async def test_a_caught_nan_in_an_update_leaves_the_record_as_it_was(readings: Repo) -> None:
    one = await readings.insert(Reading(id=1, site="north", value=1.0))
    counters = await readings.counters(Reading)
    entries = await reading_index_keys(readings.engine)

    async def work(tx: Repo) -> None:
        with pytest.raises(IndexValueError, match=r"Reading\.value"):
            await tx.update(one, {"site": "south", "value": math.nan})
        with pytest.raises(IndexValueError, match=r"Reading\.value"):
            await tx.upsert(Reading(id=1, site="east", value=math.nan))

    await readings.transaction(work)
    assert await readings.get(Reading, 1) == one
    assert await readings.all_by(Reading, {"site": "north"}) == [one]
    assert await readings.all_by(Reading, {"site": "south"}) == []
    assert await readings.all_by(Reading, {"value": 1.0}) == [one]
    assert await readings.counters(Reading) == counters
    assert await reading_index_keys(readings.engine) == entries


async def test_a_caught_value_too_large_error_leaves_nothing_of_the_write(store: Repo) -> None:
    """An index key over the key limit, caught inside the transaction: neither the insert
    nor the update wrote its record, and the update kept its old index entries."""
    ada = await store.insert(person("ada"))
    before = await store.counters(Person)

    async def work(tx: Repo) -> None:
        with pytest.raises(ValueTooLargeError, match="'email'"):
            await tx.insert(Person(id="huge", name="huge", email="h" * 20_000))
        with pytest.raises(ValueTooLargeError, match="'email'"):
            await tx.update(ada, {"team": "blue", "email": "a" * 20_000})

    await store.transaction(work)
    assert await store.get(Person, "huge") is None
    assert await store.all(Person) == [ada]
    assert await store.all_by(Person, {"email": "ada@example.com"}) == [ada]
    assert await store.all_by(Person, {"team": "red"}) == [ada]
    assert await store.all_by(Person, {"team": "blue"}) == []
    assert await store.counters(Person) == before
    assert await store.counters(Person, {"team": "blue"}) == Counters()


@pytest.mark.parametrize("clash", ["within the batch", "with a stored record"])
async def test_a_caught_duplicate_in_insert_all_writes_none_of_the_batch(
    store: Repo, clash: str
) -> None:
    ada = await store.insert(person("ada"))
    before = await store.counters(Person)
    bob, cy = person("bob"), person("cy")
    twin = Person(id=bob.id if clash == "within the batch" else ada.id, name="t", email="t@x.test")

    async def work(tx: Repo) -> None:
        with pytest.raises(DuplicateKeyError, match=twin.id):
            await tx.insert_all([bob, twin, cy])

    await store.transaction(work)
    assert await store.all(Person) == [ada]
    assert await store.get_many(Person, [bob.id, cy.id]) == [None, None]
    assert await store.all_by(Person, {"email": "bob@example.com"}) == []
    assert await store.counters(Person) == before


# -- conflicts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "attempts"), [(1, 1), (None, 2)])
async def test_a_limited_scan_conflicts_only_near_what_it_read(
    store: Repo, limit: int | None, attempts: int
) -> None:
    """all(limit=1) reads the first record only, so another transaction's insert far past it
    does not conflict with a transaction that read it and then writes; an unlimited all()
    read the whole collection, so the same insert makes it retry."""
    await store.insert_all([Person(id=i, name=i, email=f"{i}@x.test") for i in ("a", "b", "c")])
    tries = 0

    async def work(tx: Repo) -> None:
        nonlocal tries
        tries += 1
        first = (await tx.all(Person, limit=limit))[0]
        if tries == 1:
            await store.insert(Person(id="zzz", name="zzz", email="zzz@x.test"))
        await tx.update(first, {"age": tries})

    await store.transaction(work)
    assert tries == attempts
    stored = await store.get(Person, "a")
    assert stored is not None and stored.age == attempts
    assert [p.id for p in await store.all(Person)] == ["a", "b", "c", "zzz"]


async def test_conflicting_transactions_are_retried(store: Repo) -> None:
    """Both transactions read the counter before either writes, so the second to commit
    conflicts; its retry reads the first one's result and adds to it."""
    ada = await store.insert(person("ada", age=0))
    both_read = asyncio.Event()
    reads = 0
    attempts = 0

    async def bump(tx: Repo) -> int:
        nonlocal reads, attempts
        attempts += 1
        current = await tx.get(Person, ada.id)
        assert current is not None and current.age is not None
        reads += 1
        if reads == 2:
            both_read.set()
        await asyncio.wait_for(both_read.wait(), 5)
        updated = await tx.update(current, {"age": current.age + 1})
        assert updated.age is not None
        return updated.age

    results = await asyncio.gather(store.transaction(bump), store.transaction(bump))
    assert sorted(results) == [1, 2]
    assert attempts == 3
    stored = await store.get(Person, ada.id)
    assert stored is not None and stored.age == 2
    assert (await store.counters(Person)).updates == 2


async def test_gathered_reads_inside_a_transaction(store: Repo) -> None:
    people = await store.insert_all([person(name) for name in ("ada", "bob", "cy", "dee")])

    async def work(tx: Repo) -> list[Any]:
        return list(
            await asyncio.gather(
                *(tx.get(Person, p.id) for p in people),
                tx.get(Person, "missing"),
                tx.get_by(Person, {"email": "cy@example.com"}),
                tx.all(Person, limit=2),
                tx.counters(Person),
            )
        )

    *found, missing, cy, first_two, counters = await store.transaction(work)
    assert found == people
    assert missing is None
    assert cy == people[2]
    assert first_two == people[:2]
    assert counters.collection == 4


async def test_nested_transaction_joins_the_outer_one(store: Repo) -> None:
    ada, bob = person("ada"), person("bob")

    async def inner(tx: Repo) -> None:
        await tx.insert(bob)

    async def outer(tx: Repo) -> None:
        await tx.insert(ada)
        await tx.transaction(inner)
        raise RuntimeError("roll back both")

    with pytest.raises(RuntimeError):
        await store.transaction(outer)
    assert await store.all(Person) == []


class AlwaysConflicts:
    """A transaction function whose every commit conflicts (1020): each attempt reads a key,
    another transaction then writes it, and the attempt writes it too (and stores a person)."""

    def __init__(self, store: Repo) -> None:
        self.store = store
        self.attempts = 0

    async def __call__(self, tx: Repo) -> None:
        self.attempts += 1
        key = tx.keyspace.user("hot")
        await tx.transaction_handle.get(key)

        async def interfere(tr: Any) -> None:
            tr.set(key, b"theirs")

        await self.store.engine.transact(interfere)
        tx.transaction_handle.set(key, b"mine")
        await tx.insert(person(f"p{self.attempts}"))


@pytest.mark.parametrize(("retry_limit", "attempts"), [(2, 3), (0, 1)])
async def test_retry_limit_ends_an_always_conflicting_transaction(
    store: Repo, retry_limit: int, attempts: int
) -> None:
    always_conflicts = AlwaysConflicts(store)
    with pytest.raises(FDBError) as raised:
        await store.transaction(always_conflicts, retry_limit=retry_limit)
    assert raised.value.code == ErrorCode.NOT_COMMITTED
    assert always_conflicts.attempts == attempts
    assert await raw_get(store.engine, store.keyspace.user("hot")) == b"theirs"
    assert await store.all(Person) == []


async def test_timeout_ends_an_always_conflicting_transaction(store: Repo) -> None:
    always_conflicts = AlwaysConflicts(store)
    with pytest.raises(FDBError) as raised:
        await store.transaction(always_conflicts, timeout=0.2)
    assert raised.value.code == ErrorCode.TRANSACTION_TIMED_OUT
    assert always_conflicts.attempts >= 1
    assert await store.all(Person) == []


async def test_versionstamped_inserts_in_a_retried_transaction(store: Repo) -> None:
    """A retried attempt starts its versionstamp user versions afresh, and the failed
    attempt leaves no future whose error nobody retrieves (asyncio would log it when the
    future is collected)."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    try:
        await _retried_versionstamped_inserts(store)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert [context["message"] for context in unhandled] == []


async def _retried_versionstamped_inserts(store: Repo) -> None:
    attempts = 0
    engine = store.engine

    async def work(tx: Repo) -> list[Event]:
        nonlocal attempts
        attempts += 1
        key = tx.keyspace.user("hot")
        await tx.transaction_handle.get(key)
        if attempts == 1:

            async def interfere(tr: Any) -> None:
                tr.set(key, b"theirs")

            await engine.transact(interfere)
        tx.transaction_handle.set(key, b"mine")
        return await tx.insert_all([Event(kind="a"), Event(kind="b")])

    first, second = await store.transaction(work)
    assert attempts == 2
    assert first.id.is_complete() and second.id.is_complete()
    assert (first.id.user_version, second.id.user_version) == (0, 1)
    assert await store.all(Event) == [first, second]
