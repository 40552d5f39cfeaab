"""Models the data-layer tests share."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from fdbsync.data import Index, Model, SchemaMetadata, Versionstamp, VersionstampId, new_id


class Person(
    Model,
    source="people",
    indexes=[
        Index("email"),
        Index("team", "name"),
        SchemaMetadata(),
        SchemaMetadata(by=("team",)),
    ],
):
    id: str = Field(default_factory=new_id)
    name: str
    email: str
    team: str = "red"
    age: int | None = None


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str


class Everything(Model, source="everything", primary_key="key"):
    """One field of every supported type."""

    key: int
    text: str = ""
    number: int = 0
    real: float = 0.0
    flag: bool = False
    blob: bytes = b""
    when: dt.datetime | None = None
    day: dt.date | None = None
    clock: dt.time | None = None
    uid: uuid.UUID | None = None
    color: Color = Color.RED
    amount: Decimal = Decimal(0)
    address: Address | None = None
    tags: list[str] = Field(default_factory=list)
    extra: dict[str, int] = Field(default_factory=dict)


class Event(Model, source="events", indexes=[Index("kind"), SchemaMetadata()]):
    """Primary keys assigned by the commit's versionstamp."""

    id: VersionstampId = Field(default_factory=Versionstamp)
    kind: str


class Blob(Model, source="blobs", indexes=[SchemaMetadata()]):
    """Large values: split over several keys above the engine's value limit."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    data: bytes = b""


class Capped(Model, source="capped", max_value_size=1000):
    id: int
    text: str = ""


ALL_MODELS = (Person, Everything, Event, Blob, Capped)


def person(name: str, **fields: Any) -> Person:
    """A Person with an email made from the name."""
    return Person(name=name, email=f"{name}@example.com", **fields)
