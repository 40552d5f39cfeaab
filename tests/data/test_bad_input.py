"""Bad input: errors that name what is wrong, raised before anything is written."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from fdbsync.data import (
    Between,
    Counters,
    Gt,
    Gte,
    Index,
    IndexNotReadyError,
    IndexValueError,
    Lt,
    MissingIndexError,
    Model,
    Query,
    QueryError,
    Repo,
    SchemaMetadata,
    ValueTooLargeError,
)
from fdbsync.engine import Engine, KeyValue

from .models import Capped, Everything, Person, person


class Reading(Model, source="test_bad_input_readings", indexes=[Index("value"), SchemaMetadata()]):
    id: int
    value: float


class ItemV1(Model, source="test_bad_input_items"):
    """The items model before it declared an index."""

    id: int
    colour: str


class ItemV2(
    Model, source="test_bad_input_items", indexes=[Index("colour"), Index("colour", "id")]
):
    id: int
    colour: str


async def every_key(engine: Engine) -> list[KeyValue]:
    return await engine.create_transaction().get_range(b"", b"\xff").to_list()


@pytest.fixture
async def readings(engine: Engine) -> Repo:
    repo = Repo(engine, models=[Reading])
    await repo.build_indexes(Reading)
    return repo


# -- validation ------------------------------------------------------------------------------


async def test_invalid_update_is_refused_before_writing(repo: Repo) -> None:
    ada = await repo.insert(person("ada", age=30))
    before = await repo.counters(Person)
    with pytest.raises(ValidationError, match="age"):
        await repo.update(ada, {"age": "old"})
    with pytest.raises(ValidationError, match="email"):
        await repo.update(ada, {"email": None, "age": 31})
    with pytest.raises(ValidationError, match="timezone-aware"):
        await repo.update(await repo.insert(Everything(key=1)), {"when": dt.datetime(2024, 1, 1)})
    assert await repo.get(Person, ada.id) == ada
    assert await repo.counters(Person) == before
    assert await repo.get(Everything, 1) == Everything(key=1)


async def test_invalid_assignment_is_refused(repo: Repo) -> None:
    ada = await repo.insert(person("ada", age=30))
    with pytest.raises(ValidationError, match="age"):
        ada.age = "old"  # type: ignore[assignment]
    await repo.update(ada)
    assert await repo.get(Person, ada.id) == person("ada", age=30).model_copy(update={"id": ada.id})
    assert (await repo.counters(Person)).updates == 0


def test_invalid_record_cannot_be_built() -> None:
    with pytest.raises(ValidationError, match="email"):
        Person(name="ada")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="key"):
        Everything(key="seven")  # type: ignore[arg-type]


# -- values an index cannot hold -------------------------------------------------------------


async def test_nan_in_an_indexed_float(readings: Repo) -> None:
    with pytest.raises(IndexValueError, match="Reading") as raised:
        await readings.insert(Reading(id=1, value=float("nan")))
    assert "value" in str(raised.value)
    assert await readings.get(Reading, 1) is None
    assert await readings.all(Reading) == []
    assert await readings.counters(Reading) == Counters()


async def test_nan_in_an_update_or_upsert(readings: Repo) -> None:
    stored = await readings.insert(Reading(id=1, value=1.5))
    with pytest.raises(IndexValueError, match=r"Reading\.value"):
        await readings.update(stored, {"value": float("nan")})
    with pytest.raises(IndexValueError, match=r"Reading\.value"):
        await readings.upsert(Reading(id=1, value=float("nan")))
    with pytest.raises(IndexValueError, match=r"Reading\.value"):
        await readings.insert_all([Reading(id=2, value=2.0), Reading(id=3, value=float("nan"))])
    assert await readings.all(Reading) == [stored]
    assert await readings.all_by(Reading, {"value": 1.5}) == [stored]
    assert await readings.counters(Reading) == Counters(inserts=1, collection=1, changes=1)


async def test_nan_in_a_query(readings: Repo) -> None:
    await readings.insert(Reading(id=1, value=1.0))
    with pytest.raises(IndexValueError, match="Reading"):
        await readings.all_by(Reading, {"value": float("nan")})
    with pytest.raises(IndexValueError, match="Reading"):
        await readings.all_by(Reading, {"value": Gt(float("nan"))})


async def test_infinities_are_indexable(readings: Repo) -> None:
    low, high = Reading(id=1, value=float("-inf")), Reading(id=2, value=float("inf"))
    await readings.insert_all([high, low, Reading(id=3, value=0.0)])
    assert [r.id for r in await readings.all_by(Reading, {"value": Gte(-1e308)})] == [3, 2]
    assert await readings.all_by(Reading, {"value": float("-inf")}) == [low]


# -- queries no index answers ----------------------------------------------------------------


async def test_query_on_a_field_without_index(repo: Repo) -> None:
    with pytest.raises(MissingIndexError, match="Person") as raised:
        await repo.all_by(Person, {"age": 30})
    assert "age" in str(raised.value)
    assert "Index('age')" in str(raised.value)


async def test_missing_index_message_orders_equalities_before_the_range(repo: Repo) -> None:
    with pytest.raises(MissingIndexError) as raised:
        await repo.all_by(Person, {"name": "ada", "age": Gt(3)})
    assert "Index('name', 'age')" in str(raised.value)
    with pytest.raises(MissingIndexError) as raised:
        await repo.all_by(Person, {"name": "ada"})
    assert "Index('name')" in str(raised.value)


async def test_range_on_a_field_that_is_not_next_in_the_index(repo: Repo) -> None:
    """Index("team", "name") answers a range on name only after an equality on team."""
    with pytest.raises(MissingIndexError, match="name"):
        await repo.all_by(Person, {"name": Gt("a")})
    assert await repo.all_by(Person, {"team": "red", "name": Gt("a")}) == []


async def test_index_declared_but_not_built(root: Repo) -> None:
    fresh = await root.tenants.create("fresh")
    ada = await fresh.insert(person("ada"))
    with pytest.raises(IndexNotReadyError, match="'email'") as raised:
        await fresh.all_by(Person, {"email": "ada@example.com"})
    assert "build_indexes(Person)" in str(raised.value)
    assert "fresh" in str(raised.value)
    with pytest.raises(IndexNotReadyError, match="'team_name'"):
        await fresh.get_by(Person, {"team": "red"})
    assert await fresh.get(Person, ada.id) == ada
    assert await fresh.all(Person) == [ada]

    built = await fresh.build_indexes(Person)
    assert {"email", "team_name"} <= set(built)
    assert await fresh.all_by(Person, {"email": "ada@example.com"}) == [ada]
    assert await fresh.all_by(Person, {"team": "red"}) == [ada]
    assert await fresh.build_indexes(Person) == []


async def test_build_indexes_in_batches_covers_older_records(root: Repo, engine: Engine) -> None:
    """Records written before the index was declared get their entries from the build."""
    await root.tenants.create("fresh")
    before = await Repo(engine, models=[ItemV1], multi_tenant=True).tenants.open("fresh")
    colours = ["red", "blue", "green"]
    await before.insert_all([ItemV1(id=i, colour=colours[i % 3]) for i in range(10)])

    after = await Repo(engine, models=[ItemV2], multi_tenant=True).tenants.open("fresh")
    with pytest.raises(IndexNotReadyError, match="ItemV2 index 'colour'"):
        await after.all_by(ItemV2, {"colour": "red"})
    assert await after.index_states(ItemV2) == {"colour": None, "colour_id": None}

    assert await after.build_indexes(ItemV2, batch_size=3) == ["colour", "colour_id"]
    assert await after.index_states(ItemV2) == {"colour": "ready", "colour_id": "ready"}
    for offset, colour in enumerate(colours):
        found = await after.all_by(ItemV2, {"colour": colour})
        assert [item.id for item in found] == list(range(offset, 10, 3))
    assert [i.id for i in await after.all_by(ItemV2, {"colour": "red", "id": Between(3, 8)})] == [
        3,
        6,
    ]
    assert len(await after.all(ItemV2)) == 10


async def test_build_with_a_batch_size_that_divides_the_records(root: Repo, engine: Engine) -> None:
    await root.tenants.create("fresh")
    before = await Repo(engine, models=[ItemV1], multi_tenant=True).tenants.open("fresh")
    await before.insert_all([ItemV1(id=i, colour="red") for i in range(9)])
    after = await Repo(engine, models=[ItemV2], multi_tenant=True).tenants.open("fresh")
    await after.build_indexes(ItemV2, batch_size=3)
    assert [i.id for i in await after.all_by(ItemV2, {"colour": "red"})] == list(range(9))


# -- malformed queries -----------------------------------------------------------------------


async def test_query_value_of_the_wrong_type(repo: Repo) -> None:
    with pytest.raises(QueryError, match=r"Person\.age") as raised:
        await repo.all_by(Person, {"age": "abc"})
    assert "'abc'" in str(raised.value)
    with pytest.raises(QueryError, match=r"Person\.age"):
        Query(Person, {"age": Gt("abc")})
    with pytest.raises(QueryError, match=r"Person\.age"):
        Query(Person, {"age": Between(1, "x")})
    with pytest.raises(QueryError, match=r"Person\.team"):
        await repo.get_by(Person, {"team": ["red"]})


async def test_two_range_conditions(repo: Repo) -> None:
    with pytest.raises(QueryError, match="one range") as raised:
        Query(Person, {"age": Gt(1), "name": Lt("z")})
    assert "age" in str(raised.value) and "name" in str(raised.value)
    with pytest.raises(QueryError, match="one range"):
        await repo.all_by(Person, {"team": Gte("a"), "name": Lt("z")})
    with pytest.raises(QueryError, match="one range"):
        Query(Person, {"team": Gte("a")}).where(name=Lt("z"))


async def test_unknown_field_in_a_query(repo: Repo) -> None:
    with pytest.raises(QueryError, match="nickname"):
        Query(Person, {"nickname": "ada"})
    with pytest.raises(QueryError, match="nickname"):
        Query(Person).where(nickname="ada")
    with pytest.raises(QueryError, match="nickname"):
        await repo.all_by(Person, {"nickname": "ada"})
    with pytest.raises(QueryError, match="nickname"):
        await repo.get_by(Person, {"nickname": "ada"})


def test_negative_limit() -> None:
    with pytest.raises(QueryError, match="limit"):
        Query(Person).take(-1)


# -- size limits -----------------------------------------------------------------------------


async def test_record_over_max_value_size(repo: Repo) -> None:
    with pytest.raises(ValueTooLargeError, match="Capped") as raised:
        await repo.insert(Capped(id=1, text="x" * 2000))
    assert "1000" in str(raised.value)
    assert await repo.get(Capped, 1) is None
    assert await repo.all(Capped) == []


async def test_update_over_max_value_size(repo: Repo) -> None:
    small = await repo.insert(Capped(id=1, text="small"))
    with pytest.raises(ValueTooLargeError, match="max_value_size of 1000"):
        await repo.update(small, {"text": "y" * 2000})
    with pytest.raises(ValueTooLargeError, match="Capped"):
        await repo.upsert(Capped(id=1, text="z" * 2000))
    with pytest.raises(ValueTooLargeError, match="Capped"):
        await repo.insert_all([Capped(id=2), Capped(id=3, text="w" * 2000)])
    assert await repo.all(Capped) == [small]


async def test_index_key_over_the_key_limit(repo: Repo) -> None:
    huge = Person(name="ada", email="a" * 20_000 + "@example.com")
    with pytest.raises(ValueTooLargeError, match="'email'") as raised:
        await repo.insert(huge)
    assert "Person" in str(raised.value)
    assert "10000" in str(raised.value)
    assert await repo.get(Person, huge.id) is None
    assert await repo.all(Person) == []
    assert await repo.counters(Person) == Counters()


async def test_update_to_an_index_key_over_the_key_limit(repo: Repo) -> None:
    ada = await repo.insert(person("ada"))
    before = await repo.counters(Person)
    with pytest.raises(ValueTooLargeError, match="'email'"):
        await repo.update(ada, {"email": "a" * 20_000})
    assert await repo.get(Person, ada.id) == ada
    assert await repo.all_by(Person, {"email": "ada@example.com"}) == [ada]
    assert await repo.counters(Person) == before


async def test_failed_writes_leave_no_keys(engine: Engine) -> None:
    repo = Repo(engine, models=[Person, Capped])
    with pytest.raises(ValueTooLargeError):
        await repo.insert(Person(name="ada", email="a" * 20_000))
    with pytest.raises(ValueTooLargeError):
        await repo.insert(Capped(id=1, text="x" * 2000))
    with pytest.raises(QueryError):
        await repo.all_by(Person, {"age": "abc"})
    assert await every_key(engine) == []
