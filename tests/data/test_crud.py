"""Every CRUD path of the Repo, on a single-tenant repo and on a tenant of a multi-tenant one."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from fdbsync.data import (
    Counters,
    DuplicateKeyError,
    FieldError,
    Model,
    Query,
    QueryError,
    RecordNotFoundError,
    Repo,
    SchemaMetadata,
    UnknownModelError,
    new_id,
    tenant_of,
)
from fdbsync.engine import Engine

from .models import Address, Blob, Color, Event, Everything, Person, person


class Sample(Model, source="test_crud_samples", indexes=[SchemaMetadata()]):
    """A float no index holds: it may be NaN."""

    id: int
    x: float = 0.0


# -- insert ----------------------------------------------------------------------------------


async def test_insert_returns_a_stored_copy(store: Repo) -> None:
    ada = person("ada")
    stored = await store.insert(ada)
    assert stored == ada
    assert stored is not ada
    assert tenant_of(stored) == store.tenant
    assert store.tenant in ("", "acme")
    assert tenant_of(ada) is None
    got = await store.get(Person, ada.id)
    assert got == ada
    assert got is not None and tenant_of(got) == store.tenant
    assert await store.counters(Person) == Counters(inserts=1, collection=1, changes=1)


async def test_insert_duplicate_primary_key_changes_nothing(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    before = await store.counters(Person)
    impostor = Person(id=ada.id, name="impostor", email="imp@example.com")
    with pytest.raises(DuplicateKeyError, match=ada.id):
        await store.insert(impostor)
    assert await store.get(Person, ada.id) == ada
    assert await store.all_by(Person, {"email": "imp@example.com"}) == []
    assert await store.counters(Person) == before


# -- insert_all ------------------------------------------------------------------------------


async def test_insert_all_stores_every_record(store: Repo) -> None:
    batch = [person(n) for n in ("ada", "bob", "cy")]
    stored = await store.insert_all(batch)
    assert stored == batch
    assert all(tenant_of(r) == store.tenant for r in stored)
    assert await store.get_many(Person, [p.id for p in batch]) == batch
    assert (await store.counters(Person)).collection == 3


async def test_insert_all_duplicate_within_batch_writes_nothing(store: Repo) -> None:
    ada = person("ada")
    twin = Person(id=ada.id, name="twin", email="twin@example.com")
    with pytest.raises(DuplicateKeyError, match="twice"):
        await store.insert_all([person("bob"), ada, twin])
    assert await store.all(Person) == []
    assert await store.counters(Person) == Counters()


async def test_insert_all_with_already_stored_key_writes_nothing(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    before = await store.counters(Person)
    bob, cy = person("bob"), person("cy")
    clash = Person(id=ada.id, name="clash", email="clash@example.com")
    with pytest.raises(DuplicateKeyError, match=ada.id):
        await store.insert_all([bob, clash, cy])
    assert await store.all(Person) == [ada]
    assert await store.get_many(Person, [bob.id, cy.id]) == [None, None]
    assert await store.all_by(Person, {"email": "bob@example.com"}) == []
    assert await store.counters(Person) == before


# -- upsert ----------------------------------------------------------------------------------


async def test_upsert_inserts_when_missing(store: Repo) -> None:
    ada = person("ada")
    assert await store.upsert(ada) == ada
    assert await store.get(Person, ada.id) == ada
    assert (await store.counters(Person)).inserts == 1


async def test_upsert_replace_moves_index_entries(store: Repo) -> None:
    ada = await store.insert(person("ada", team="red"))
    new = Person(id=ada.id, name="ada", email="ada@new.example.com", team="blue")
    stored = await store.upsert(new, on_conflict="replace")
    assert stored == new
    assert tenant_of(stored) == store.tenant
    assert await store.get(Person, ada.id) == new
    assert await store.all_by(Person, {"email": "ada@example.com"}) == []
    assert await store.all_by(Person, {"email": "ada@new.example.com"}) == [new]
    assert await store.all_by(Person, {"team": "red"}) == []
    assert await store.all_by(Person, {"team": "blue"}) == [new]
    # `collection` counts changes to which records are in the collection (inserts + deletes).
    assert await store.counters(Person) == Counters(inserts=1, collection=1, updates=1, changes=2)
    assert await store.counters(Person, {"team": "red"}) == Counters(
        inserts=1, deletes=1, collection=2, updates=1, changes=2
    )
    assert await store.counters(Person, {"team": "blue"}) == Counters(
        inserts=1, collection=1, updates=1, changes=1
    )


async def test_upsert_nothing_keeps_the_stored_record(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    before = await store.counters(Person)
    other = Person(id=ada.id, name="other", email="other@example.com")
    stored = await store.upsert(other, on_conflict="nothing")
    assert stored == ada
    assert tenant_of(stored) == store.tenant
    assert await store.get(Person, ada.id) == ada
    assert await store.all_by(Person, {"email": "other@example.com"}) == []
    assert await store.counters(Person) == before


async def test_upsert_rejects_unknown_on_conflict(store: Repo) -> None:
    with pytest.raises(ValueError, match="on_conflict"):
        await store.upsert(person("ada"), on_conflict="merge")  # type: ignore[arg-type]
    assert await store.all(Person) == []


# -- update ----------------------------------------------------------------------------------


async def test_update_with_changes(store: Repo) -> None:
    ada = await store.insert(person("ada", age=30))
    updated = await store.update(ada, {"age": 31, "team": "blue"})
    assert (updated.age, updated.team, updated.name) == (31, "blue", "ada")
    assert await store.get(Person, ada.id) == updated
    assert await store.all_by(Person, {"team": "blue"}) == [updated]
    assert await store.all_by(Person, {"team": "red"}) == []
    assert (await store.counters(Person)).updates == 1


async def test_update_returns_a_record_carrying_the_tenant(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    updated = await store.update(ada, {"age": 31})
    assert tenant_of(updated) == store.tenant


async def test_update_validates_changes(store: Repo) -> None:
    ada = await store.insert(person("ada", age=30))
    before = await store.counters(Person)
    with pytest.raises(ValidationError):
        await store.update(ada, {"age": "thirty"})
    assert await store.get(Person, ada.id) == ada
    assert await store.counters(Person) == before


async def test_update_coerces_changes_like_validation(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    updated = await store.update(ada, {"age": "31"})
    assert updated.age == 31
    stored = await store.get(Person, ada.id)
    assert stored is not None and stored.age == 31


async def test_update_primary_key_or_unknown_field_is_field_error(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    before = await store.counters(Person)
    with pytest.raises(FieldError, match="primary key"):
        await store.update(ada, {"id": new_id()})
    with pytest.raises(FieldError, match="nickname"):
        await store.update(ada, {"nickname": "a"})
    assert await store.get(Person, ada.id) == ada
    assert await store.counters(Person) == before


async def test_update_setting_primary_key_to_itself_is_allowed(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    updated = await store.update(ada, {"id": ada.id, "name": "ada2"})
    assert updated.name == "ada2"


async def test_update_of_missing_record(store: Repo) -> None:
    with pytest.raises(RecordNotFoundError):
        await store.update(person("ghost"), {"age": 1})
    assert await store.all(Person) == []


async def test_update_that_changes_nothing_writes_nothing(store: Repo) -> None:
    ada = await store.insert(person("ada", age=30))
    before = await store.counters(Person)
    watch = await store.watch(Person, ada.id)

    same = await store.update(ada, {"age": 30, "name": "ada"})
    assert same == ada
    await store.update(ada)
    assert await store.counters(Person) == before
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(watch), 0.3)

    await store.update(ada, {"age": 31})
    await asyncio.wait_for(watch, 5)
    assert (await store.counters(Person)).updates == before.updates + 1


async def test_an_update_to_equal_decimals_with_other_digits_is_written(store: Repo) -> None:
    """Decimal("1.00") == Decimal("1.0"), but the stored JSON keeps the digits: a change."""
    stored = await store.insert(Everything(key=1, amount=Decimal("1.0")))
    updated = await store.update(stored, {"amount": Decimal("1.00")})
    assert str(updated.amount) == "1.00"
    again = await store.get(Everything, 1)
    assert again is not None and str(again.amount) == "1.00"


async def test_an_upsert_of_negative_zero_over_zero_is_written(store: Repo) -> None:
    await store.insert(Everything(key=1, real=0.0))
    await store.upsert(Everything(key=1, real=-0.0))
    stored = await store.get(Everything, 1)
    assert stored is not None and math.copysign(1.0, stored.real) == -1.0


async def test_a_record_holding_nan_rewritten_unchanged_writes_nothing(engine: Engine) -> None:
    """NaN != NaN, yet a record still holding the same NaN is the same stored record."""
    repo = Repo(engine, models=[Sample])
    stored = await repo.insert(Sample(id=1, x=math.nan))
    before = await repo.counters(Sample)
    watch = await repo.watch(Sample, 1)

    await repo.upsert(Sample(id=1, x=math.nan))
    await repo.update(stored)
    await repo.update(stored, {"x": float("nan")})
    assert await repo.counters(Sample) == before
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(watch), 0.3)

    await repo.update(stored, {"x": 1.0})
    await asyncio.wait_for(watch, 5)
    assert (await repo.counters(Sample)).updates == before.updates + 1


async def test_update_record_after_mutating_it(store: Repo) -> None:
    ada = await store.insert(person("ada", age=30))
    ada.name = "Ada"
    ada.email = "ada@lovelace.example.com"
    updated = await store.update(ada)
    assert updated == ada
    assert await store.get(Person, ada.id) == ada
    assert await store.all_by(Person, {"email": "ada@lovelace.example.com"}) == [ada]
    assert await store.all_by(Person, {"email": "ada@example.com"}) == []


# -- delete ----------------------------------------------------------------------------------


async def test_delete(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    bob = await store.insert(person("bob"))
    await store.delete(ada)
    assert await store.get(Person, ada.id) is None
    assert await store.all(Person) == [bob]
    assert await store.all_by(Person, {"email": "ada@example.com"}) == []
    assert await store.counters(Person) == Counters(inserts=2, deletes=1, collection=3, changes=3)


async def test_delete_by_key(store: Repo) -> None:
    ada = await store.insert(person("ada", team="blue"))
    await store.delete_by_key(Person, ada.id)
    assert await store.get(Person, ada.id) is None
    assert await store.all_by(Person, {"team": "blue"}) == []
    assert await store.counters(Person, {"team": "blue"}) == Counters(
        inserts=1, deletes=1, collection=2, changes=2
    )


async def test_delete_missing_record(store: Repo) -> None:
    ada = await store.insert(person("ada"))
    await store.delete(ada)
    before = await store.counters(Person)
    with pytest.raises(RecordNotFoundError):
        await store.delete(ada)
    with pytest.raises(RecordNotFoundError):
        await store.delete_by_key(Person, "no-such-id")
    assert await store.counters(Person) == before


# -- reads -----------------------------------------------------------------------------------


async def test_get_and_get_many(store: Repo) -> None:
    ada, bob = await store.insert_all([person("ada"), person("bob")])
    assert await store.get(Person, "missing") is None
    assert await store.get_many(Person, [bob.id, "missing", ada.id]) == [bob, None, ada]
    assert await store.get_many(Person, [ada.id]) == [ada]
    assert await store.get_many(Person, []) == []


async def test_primary_keys_given_in_their_json_form(store: Repo) -> None:
    """A UUID as a str and a versionstamp id as its 24 hex digits (as a URL or JSON body
    carries them) find the record, as the model's own validation would read them."""
    blob = await store.insert(Blob(data=b"x"))
    event = await store.insert(Event(kind="a"))
    uid, hex_id = str(blob.id), event.model_dump(mode="json")["id"]
    assert isinstance(hex_id, str) and len(hex_id) == 24
    assert await store.get(Blob, uid) == blob
    assert await store.get(Event, hex_id) == event
    assert await store.get_many(Blob, [uid, str(uuid.uuid4())]) == [blob, None]
    assert await store.get_many(Event, [hex_id]) == [event]

    watch = await store.watch(Blob, uid)
    changed = await store.update(blob, {"id": uid, "data": b"y"})
    assert changed.id == blob.id and changed.data == b"y"
    await asyncio.wait_for(watch, 5)
    with pytest.raises(FieldError, match="primary key"):
        await store.update(changed, {"id": str(uuid.uuid4())})

    await store.delete_by_key(Blob, uid)
    await store.delete_by_key(Event, hex_id)
    assert await store.all(Blob) == []
    assert await store.all(Event) == []


async def test_get_by(store: Repo) -> None:
    ada, _, _ = await store.insert_all(
        [person("ada", team="red"), person("bob", team="blue"), person("cy", team="blue")]
    )
    assert await store.get_by(Person, {"email": "ada@example.com"}) == ada
    assert await store.get_by(Person, {"email": "nobody@example.com"}) is None
    with pytest.raises(QueryError, match="more than one"):
        await store.get_by(Person, {"team": "blue"})


async def test_all_in_primary_key_order_with_limit_and_reverse(store: Repo) -> None:
    ids = ["m", "c", "x", "a", "q"]
    await store.insert_all([Person(id=i, name=i, email=f"{i}@example.com") for i in ids])
    ordered = sorted(ids)
    assert [p.id for p in await store.all(Person)] == ordered
    assert [p.id for p in await store.all(Person, limit=2)] == ordered[:2]
    assert [p.id for p in await store.all(Person, reverse=True)] == ordered[::-1]
    assert [p.id for p in await store.all(Person, limit=3, reverse=True)] == ordered[::-1][:3]
    assert await store.all(Person, limit=0) == []
    assert await store.all(Everything) == []


async def test_stream_pages(store: Repo) -> None:
    records = [
        Person(
            id=f"p{i:02}", name=f"n{i:02}", email=f"{i}@example.com", team=("red", "blue")[i % 2]
        )
        for i in range(20)
    ]
    await store.insert_all(records)
    blue = [r for r in records if r.team == "blue"]
    blue_query = Query(Person, {"team": "blue"})
    for page_size in (1, 2, 7):
        assert [r async for r in store.stream(Person, page_size=page_size)] == records
        assert [r async for r in store.stream(blue_query, page_size=page_size)] == blue
        limited = [r async for r in store.stream(Query(Person).take(5), page_size=page_size)]
        assert limited == records[:5]
        some_blue = [r async for r in store.stream(blue_query.take(3), page_size=page_size)]
        assert some_blue == blue[:3]
        backwards = [r async for r in store.stream(Query(Person).desc(), page_size=page_size)]
        assert backwards == records[::-1]
    streamed = [r async for r in store.stream(Person, page_size=7)]
    assert all(tenant_of(r) == store.tenant for r in streamed)
    with pytest.raises(ValueError, match="page_size"):
        [r async for r in store.stream(Person, page_size=0)]


async def test_stream_of_nothing(store: Repo) -> None:
    assert [r async for r in store.stream(Person, page_size=2)] == []
    assert [r async for r in store.stream(Query(Person, {"team": "red"}), page_size=2)] == []


# -- generated ids ---------------------------------------------------------------------------


async def test_generated_ids_sort_by_creation(store: Repo) -> None:
    inserted = [await store.insert(person(f"p{i}")) for i in range(30)]
    assert all(len(p.id) == 26 for p in inserted)
    assert len({p.id for p in inserted}) == 30
    assert await store.all(Person) == inserted


def test_new_id_shape() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(len(i) == 26 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


# -- versionstamp primary keys ---------------------------------------------------------------


async def test_versionstamp_ids(store: Repo) -> None:
    first = await store.insert(Event(kind="boot"))
    assert first.id.is_complete()
    assert await store.get(Event, first.id) == first

    batch = await store.insert_all([Event(kind="tick") for _ in range(3)])
    ids = [e.id for e in batch]
    assert all(i.is_complete() for i in ids)
    assert len(set(ids)) == 3
    assert ids == sorted(ids)
    assert ids[0] > first.id
    for event in batch:
        assert await store.get(Event, event.id) == event
    assert await store.all_by(Event, {"kind": "tick"}) == batch
    assert await store.all_by(Event, {"kind": "boot"}) == [first]
    assert await store.all(Event) == [first, *batch]
    assert (await store.counters(Event)).collection == 4


async def test_versionstamp_ids_in_a_transaction(store: Repo) -> None:
    seen_inside: list[bool] = []

    async def work(tx: Repo) -> list[Event]:
        one = await tx.insert(Event(kind="a"))
        two = await tx.insert(Event(kind="b"))
        seen_inside.extend([one.id.is_complete(), two.id.is_complete()])
        return [one, two]

    one, two = await store.transaction(work)
    assert seen_inside == [False, False]
    assert one.id.is_complete() and two.id.is_complete()
    assert one.id.tr_version == two.id.tr_version
    assert one.id < two.id
    assert await store.get(Event, one.id) == one
    assert await store.all_by(Event, {"kind": "b"}) == [two]


async def test_versionstamp_record_can_be_updated_and_deleted(store: Repo) -> None:
    event = await store.insert(Event(kind="a"))
    updated = await store.update(event, {"kind": "b"})
    assert updated.id == event.id
    assert await store.all_by(Event, {"kind": "a"}) == []
    assert await store.all_by(Event, {"kind": "b"}) == [updated]
    await store.delete(updated)
    assert await store.all(Event) == []


# -- field types -----------------------------------------------------------------------------


async def test_every_field_type_round_trips(store: Repo) -> None:
    when = dt.datetime(2024, 3, 10, 1, 30, 15, 123456, tzinfo=ZoneInfo("America/New_York"))
    record = Everything(
        key=7,
        text="héllo \x00 wörld ☃",
        number=-(2**62),
        real=-1.25e-300,
        flag=True,
        blob=b"\x00\xff\x01binary\xfe",
        when=when,
        day=dt.date(1999, 12, 31),
        clock=dt.time(23, 59, 58, 999),
        uid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        color=Color.BLUE,
        amount=Decimal("1.50"),
        address=Address(street="1 Main St", city="Springfield"),
        tags=["a", "b", ""],
        extra={"x": 1, "y": -2},
    )
    await store.insert(record)
    got = await store.get(Everything, 7)
    assert got == record
    assert got is not None
    assert got.when == when
    assert got.when is not None and got.when.utcoffset() == dt.timedelta(0)
    assert got.when.tzinfo == dt.UTC
    assert got.blob == b"\x00\xff\x01binary\xfe"
    assert str(got.amount) == "1.50"
    assert got.color is Color.BLUE
    assert got.address == Address(street="1 Main St", city="Springfield")
    assert got.tags == ["a", "b", ""]
    assert got.extra == {"x": 1, "y": -2}
    assert got.uid == uuid.UUID("12345678-1234-5678-1234-567812345678")


async def test_fixed_offset_datetime_comes_back_in_utc(store: Repo) -> None:
    when = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    await store.insert(Everything(key=1, when=when))
    got = await store.get(Everything, 1)
    assert got is not None and got.when == when
    assert got.when.tzinfo == dt.UTC
    assert got.when.hour == 6 and got.when.minute == 30


async def test_infinities_round_trip(store: Repo) -> None:
    await store.insert_all([Everything(key=1, real=float("inf")), Everything(key=2, real=-1e400)])
    got = await store.get_many(Everything, [1, 2])
    assert [g.real if g else None for g in got] == [float("inf"), float("-inf")]


async def test_defaults_round_trip(store: Repo) -> None:
    await store.insert(Everything(key=-3))
    assert await store.get(Everything, -3) == Everything(key=-3)


def test_naive_datetime_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        Everything(key=1, when=dt.datetime(2024, 1, 1, 12, 0))


async def test_naive_datetime_in_update_is_refused(store: Repo) -> None:
    record = await store.insert(Everything(key=1))
    with pytest.raises(ValidationError, match="timezone-aware"):
        await store.update(record, {"when": dt.datetime(2024, 1, 1)})
    assert await store.get(Everything, 1) == Everything(key=1)


# -- schema evolution and unknown models -----------------------------------------------------


class ProfileV1(Model, source="test_crud_profiles"):
    id: int
    name: str


class ProfileV2(Model, source="test_crud_profiles"):
    id: int
    name: str
    nickname: str = "none"


async def test_field_added_later_with_default_reads_old_records(engine: Engine) -> None:
    old = Repo(engine, models=[ProfileV1])
    await old.insert_all([ProfileV1(id=1, name="ada"), ProfileV1(id=2, name="bob")])
    new = Repo(engine, models=[ProfileV2])
    assert await new.all(ProfileV2) == [
        ProfileV2(id=1, name="ada", nickname="none"),
        ProfileV2(id=2, name="bob", nickname="none"),
    ]
    one = await new.get(ProfileV2, 1)
    assert one is not None
    changed = await new.update(one, {"nickname": "countess"})
    assert changed.nickname == "countess"
    assert await new.get(ProfileV2, 1) == changed


async def test_unknown_model(engine: Engine) -> None:
    people_only = Repo(engine, models=[Person])
    with pytest.raises(UnknownModelError, match="Everything"):
        await people_only.get(Everything, 1)
    with pytest.raises(UnknownModelError, match="Everything"):
        await people_only.insert(Everything(key=1))
    with pytest.raises(UnknownModelError, match="Everything"):
        await people_only.all(Everything)
    with pytest.raises(UnknownModelError, match="Everything"):
        await people_only.delete_by_key(Everything, 1)
    with pytest.raises(UnknownModelError):
        await people_only.get(dict, 1)  # type: ignore[type-var]
    assert await Repo(engine).all(Everything) == []
    assert await people_only.all(Person) == []


async def test_insert_all_of_something_that_is_not_a_model(engine: Engine) -> None:
    repo = Repo(engine, models=[Person])
    with pytest.raises(UnknownModelError, match="dict"):
        await repo.insert_all([{"id": 1}])  # type: ignore[type-var]
    with pytest.raises(UnknownModelError, match="dict"):
        await repo.insert_all([person("ada"), {"id": 1}])  # type: ignore[type-var]
    assert await repo.all(Person) == []
