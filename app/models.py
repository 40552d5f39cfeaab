"""The example app's models. `fdbsync revision --autogenerate` compares them with migrations/."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from fdbsync import Index, Model, SchemaMetadata, new_id


def now() -> datetime:
    return datetime.now(UTC)


class Person(
    Model,
    source="people",
    indexes=[Index("email"), Index("team"), SchemaMetadata(), SchemaMetadata(by=("team",))],
):
    """Someone on a team, found by email or by team; the counters tell pages what changed."""

    id: str = Field(default_factory=new_id)
    name: str
    email: str
    team: str


class Pin(Model, source="pins", indexes=[SchemaMetadata()]):
    """A pinned person: the record's id is the person's."""

    id: str
    pinned_at: datetime = Field(default_factory=now)


class SignIn(Model, source="signins"):
    """One signed-in browser. The cookie names it; signing out deletes it, and every live page
    that follows it (on any worker) ends its stream."""

    id: str = Field(default_factory=new_id)
    account: str
    created_at: datetime = Field(default_factory=now)
