"""repo.transaction(fn): one engine transaction for every call in fn, retried on conflict."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from fdbsync.data import Counters, Repo
from fdbsync.engine import Engine, ErrorCode, FDBError

from .models import Event, Person, person


async def raw_get(engine: Engine, key: bytes) -> bytes | None:
    return await engine.create_transaction().get(key)


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
