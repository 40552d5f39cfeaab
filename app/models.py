"""The example app's models. `fdbsync revision --autogenerate` compares them with migrations/."""

from __future__ import annotations

from pydantic import Field

from fdbsync import Index, Model, SchemaMetadata, new_id


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
