"""Model declarations: mistakes are caught when the class is made, with the name of what's wrong."""

from __future__ import annotations

import pytest
from pydantic import Field

from fdbsync.data import (
    Index,
    MissingIndexError,
    Model,
    ModelDefinitionError,
    Repo,
    SchemaMetadata,
    new_id,
)
from fdbsync.engine import Engine

from .models import Person


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: type("Bad", (Model,), {"__annotations__": {"id": float}}), "Bad.id"),
        (lambda: type("Bad", (Model,), {"__annotations__": {"id": "int | None"}}), "Bad.id"),
        (lambda: type("Bad", (Model,), {"__annotations__": {"key": str}}), "'id'"),
        (
            lambda: type("Bad", (Model,), {"__annotations__": {"id": str}}, source="no spaces"),
            "source",
        ),
        (
            lambda: type("Bad", (Model,), {"__annotations__": {"id": str}}, max_value_size=0),
            "max_value_size",
        ),
        (
            lambda: type(
                "Bad", (Model,), {"__annotations__": {"id": str}}, indexes=[Index("missing")]
            ),
            "missing",
        ),
        (
            lambda: type(
                "Bad",
                (Model,),
                {"__annotations__": {"id": str}},
                indexes=[SchemaMetadata(by=("nope",))],
            ),
            "nope",
        ),
        (
            lambda: type(
                "Bad",
                (Model,),
                {"__annotations__": {"id": str, "a": str}},
                indexes=[Index("a"), Index("id", name="a")],
            ),
            "two indexes are named 'a'",
        ),
    ],
)
def test_bad_declarations_are_refused_by_name(declare: object, message: str) -> None:
    with pytest.raises(ModelDefinitionError, match=message.replace("|", r"\|")):
        declare()  # type: ignore[operator]


@pytest.mark.parametrize(
    "field",
    [
        Field(alias="displayName"),
        Field(validation_alias="displayName"),
        Field(serialization_alias="displayName"),
    ],
    ids=["alias", "validation_alias", "serialization_alias"],
)
def test_field_aliases_are_refused(field: object) -> None:
    """Records are stored by field name; an alias would make them unreadable or unwritable."""
    with pytest.raises(ModelDefinitionError, match="display_name"):
        type(
            "Aliased",
            (Model,),
            {"__annotations__": {"id": int, "display_name": str}, "display_name": field},
        )


def test_index_needs_a_field() -> None:
    with pytest.raises(ModelDefinitionError, match="at least one field"):
        Index()


def test_two_models_cannot_share_a_source(engine: Engine) -> None:
    class Other(Model, source="people"):
        id: str = Field(default_factory=new_id)

    with pytest.raises(ModelDefinitionError, match="Other and Person share the source 'people'"):
        Repo(engine, models=[Person, Other])


def test_index_and_metadata_names() -> None:
    assert Index("team", "name").name == "team_name"
    assert Index("email", name="by_email").name == "by_email"
    assert SchemaMetadata().name == "meta"
    assert SchemaMetadata(by=("team",)).name == "meta_by_team"


class Pet(
    Model,
    source="pets",
    indexes=[Index("kind", name="kind_by_pk"), Index("kind", "name", name="kind_by_name")],
):
    id: str
    kind: str
    name: str


async def test_a_query_uses_the_first_built_index_that_answers_it(engine: Engine) -> None:
    """Both indexes answer {"kind": ...}; the one declared first is not built, so the other is
    used (and its order shows it), until the first is built too."""
    repo = Repo(engine, models=[Pet])
    await repo.insert_all(
        [Pet(id="1", kind="cat", name="Zed"), Pet(id="2", kind="cat", name="Amy")]
    )
    assert await repo.build_indexes(Pet, ["kind_by_name"]) == ["kind_by_name"]
    by_name = await repo.all_by(Pet, {"kind": "cat"})
    assert [pet.name for pet in by_name] == ["Amy", "Zed"]
    await repo.build_indexes(Pet)
    by_key = await repo.all_by(Pet, {"kind": "cat"})
    assert [pet.id for pet in by_key] == ["1", "2"]


async def test_building_an_undeclared_index_names_it(engine: Engine) -> None:
    with pytest.raises(MissingIndexError, match="Pet declares no index named \\['nope'\\]"):
        await Repo(engine).build_indexes(Pet, ["nope"])


async def test_build_indexes_takes_a_single_name(engine: Engine) -> None:
    repo = Repo(engine, models=[Pet])
    assert await repo.build_indexes(Pet, "kind_by_name") == ["kind_by_name"]
    assert await repo.index_states(Pet) == {"kind_by_pk": None, "kind_by_name": "ready"}
    with pytest.raises(MissingIndexError, match=r"\['nope'\]"):
        await repo.build_indexes(Pet, "nope")
