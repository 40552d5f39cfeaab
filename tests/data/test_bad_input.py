"""Bad input: errors that name what is wrong, raised before anything is written."""

from __future__ import annotations

import datetime as dt
import math

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
from fdbsync.engine import Engine, KeyValue, pack, strinc, unpack

from .models import Capped, Event, Everything, Person, person


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


class LabelV1(Model, source="test_bad_input_labels", indexes=[Index("colour", name="by_attr")]):
    """The labels model whose index "by_attr" is on colour..."""

    id: int
    colour: str
    size: str


class LabelV2(Model, source="test_bad_input_labels", indexes=[Index("size", name="by_attr")]):
    """... and the next version, whose "by_attr" is on size."""

    id: int
    colour: str
    size: str


class GaugeV1(Model, source="test_bad_input_gauges"):
    """The gauges model before it declared indexes: it stores values they cannot hold."""

    id: int
    value: float
    label: str = ""


class GaugeV2(
    Model,
    source="test_bad_input_gauges",
    indexes=[Index("value"), Index("label"), SchemaMetadata(by=("value",))],
):
    id: int
    value: float
    label: str = ""


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


async def test_records_that_skipped_validation_are_refused(repo: Repo) -> None:
    """model_construct() and model_copy(update=...) do not validate; the Repo does, before
    writing, so no record that cannot be read back is stored."""
    ada = await repo.insert(person("ada", age=30))
    before = await repo.counters(Person)
    constructed = Person.model_construct(
        id="bob", name="bob", email="bob@example.com", team="red", age="old"
    )
    copied = ada.model_copy(update={"id": "cy", "age": "old"})
    replacing = ada.model_copy(update={"email": None})
    for bad in (constructed, copied):
        with pytest.raises(ValidationError, match="age"):
            await repo.insert(bad)
        with pytest.raises(ValidationError, match="age"):
            await repo.upsert(bad)
        with pytest.raises(ValidationError, match="age"):
            await repo.insert_all([person("dee"), bad])
    with pytest.raises(ValidationError, match="email"):
        await repo.upsert(replacing)
    assert await repo.all(Person) == [ada]
    assert await repo.get_many(Person, ["bob", "cy"]) == [None, None]
    assert await repo.counters(Person) == before


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


async def test_records_stored_before_an_index_can_still_be_updated_and_deleted(
    engine: Engine,
) -> None:
    """Records written by a model version without the indexes hold values they cannot take
    (NaN; a label too long for a key). Such a value never got an entry, so updating or
    deleting the record has none to clear: it works, and only the new value gets an entry."""
    old = Repo(engine, models=[GaugeV1])
    await old.insert_all(
        [
            GaugeV1(id=1, value=math.nan),
            GaugeV1(id=2, value=math.nan),
            GaugeV1(id=3, value=3.0, label="x" * 20_000),
            GaugeV1(id=4, value=4.0, label="y" * 20_000),
        ]
    )
    repo = Repo(engine, models=[GaugeV2])
    one, three = await repo.get_many(GaugeV2, [1, 3])
    assert one is not None and math.isnan(one.value)
    assert three is not None
    fixed = await repo.update(one, {"value": 1.0})
    shortened = await repo.update(three, {"label": "short"})
    await repo.delete_by_key(GaugeV2, 2)
    four = await repo.get(GaugeV2, 4)
    assert four is not None
    await repo.delete(four)
    assert await repo.all(GaugeV2) == [fixed, shortened]
    assert await repo.counters(GaugeV2, {"value": 1.0}) == Counters(
        inserts=1, collection=1, updates=1, changes=1
    )

    assert await repo.build_indexes(GaugeV2) == ["value", "label", "meta_by_value"]
    assert await repo.all_by(GaugeV2, {"value": 1.0}) == [fixed]
    assert await repo.all_by(GaugeV2, {"value": Gte(0.0)}) == [fixed, shortened]
    assert await repo.all_by(GaugeV2, {"label": "short"}) == [shortened]


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


async def test_an_index_redefined_under_its_old_name_is_not_ready_until_rebuilt(
    engine: Engine,
) -> None:
    """The build state remembers the definition: under LabelV2, "by_attr" (now on size) is not
    built, though LabelV1's "by_attr" (on colour) was; its build drops the colour entries,
    which would otherwise answer {"size": "L"} with the label whose colour is "L"."""
    old = Repo(engine, models=[LabelV1])
    await old.build_indexes(LabelV1)
    await old.insert_all(
        [LabelV1(id=1, colour="red", size="L"), LabelV1(id=2, colour="L", size="S")]
    )

    new = Repo(engine, models=[LabelV2])
    assert await new.index_states(LabelV2) == {"by_attr": None}
    with pytest.raises(IndexNotReadyError, match="'by_attr'"):
        await new.all_by(LabelV2, {"size": "L"})
    with pytest.raises(IndexNotReadyError, match="'by_attr'"):
        await new.get_by(LabelV2, {"size": "S"})

    assert await new.build_indexes(LabelV2) == ["by_attr"]
    assert await new.index_states(LabelV2) == {"by_attr": "ready"}
    assert [label.id for label in await new.all_by(LabelV2, {"size": "L"})] == [1]
    assert [label.id for label in await new.all_by(LabelV2, {"size": "S"})] == [2]
    assert await new.all_by(LabelV2, {"size": "red"}) == []
    prefix = pack(("", "i", "test_bad_input_labels", "by_attr"))
    entries = await engine.create_transaction().get_range(prefix, strinc(prefix)).to_list()
    assert [unpack(kv.key, len(prefix)) for kv in entries] == [("L", 1), ("S", 2)]
    assert await old.index_states(LabelV1) == {"by_attr": None}  # now built for LabelV2


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


async def test_query_values_are_validated_like_the_model(repo: Repo) -> None:
    """The model refuses naive datetimes and so does a query on the same field; a value of
    the wrong type is a QueryError naming the field."""
    naive = dt.datetime(2024, 1, 1)
    aware = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ValidationError, match="timezone-aware"):
        Everything(key=1, when=naive)
    for condition in (naive, Gt(naive), Between(aware, naive)):
        with pytest.raises(QueryError, match=r"Everything\.when") as raised:
            Query(Everything, {"when": condition})
        assert "timezone-aware" in str(raised.value)
    with pytest.raises(QueryError, match=r"Everything\.when"):
        await repo.all_by(Everything, {"when": naive})
    assert Query(Everything, {"when": aware}).equalities == {"when": aware}
    with pytest.raises(QueryError, match=r"Everything\.uid"):
        Query(Everything, {"uid": "not a uuid"})
    with pytest.raises(QueryError, match=r"Everything\.number"):
        await repo.all_by(Everything, {"number": Lt("many")})


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


async def test_primary_key_over_the_key_limit(engine: Engine) -> None:
    """The record's own key is checked before anything is written, and the error names the
    model (not a bare engine error, nor an index entry that happens to hold the key)."""
    repo = Repo(engine, models=[Person])
    long = Person(id="k" * 20_000, name="ada", email="ada@example.com")
    with pytest.raises(ValueTooLargeError, match="Person: a primary key") as raised:
        await repo.insert(long)
    assert "10000" in str(raised.value)
    with pytest.raises(ValueTooLargeError, match="Person: a primary key"):
        await repo.upsert(long)
    with pytest.raises(ValueTooLargeError, match="Person: a primary key"):
        await repo.insert_all([person("bob"), long])
    assert await every_key(engine) == []


async def test_too_many_versionstamped_inserts_in_one_transaction(repo: Repo) -> None:
    """A versionstamp numbers at most 65,536 records per transaction (a 2-byte user version)."""
    with pytest.raises(ValueTooLargeError, match="Event") as raised:
        await repo.insert_all([Event(kind="k") for _ in range(65_537)])
    assert "65536" in str(raised.value)
    assert await repo.all(Event) == []
    assert await repo.counters(Event) == Counters()


async def test_failed_writes_leave_no_keys(engine: Engine) -> None:
    repo = Repo(engine, models=[Person, Capped])
    with pytest.raises(ValueTooLargeError):
        await repo.insert(Person(name="ada", email="a" * 20_000))
    with pytest.raises(ValueTooLargeError):
        await repo.insert(Capped(id=1, text="x" * 2000))
    with pytest.raises(QueryError):
        await repo.all_by(Person, {"age": "abc"})
    assert await every_key(engine) == []
