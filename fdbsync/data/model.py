"""`Model`: a Pydantic model that is also a schema: its source, primary key and indexes."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from ..engine.keys import Versionstamp
from .errors import ModelDefinitionError

if TYPE_CHECKING:
    from .indexes import Indexer

__all__ = ["Model", "ModelInfo", "primary_key_of", "tenant_of"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What fdbsync knows about a model class, fixed when the class is created."""

    source: str
    primary_key: str
    indexes: tuple[Indexer, ...]
    max_value_size: int | None

    def index(self, name: str) -> Indexer:
        for indexer in self.indexes:
            if indexer.name == name:
                return indexer
        raise LookupError(name)


_SOURCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


class Model(BaseModel):
    """Base class of stored records.

    Declare the schema with class keywords::

        class Person(Model, source="people", indexes=[Index("email"), SchemaMetadata()]):
            id: str = Field(default_factory=new_id)
            name: str
            email: str

    `source` names the collection (default: the class name in lower case), `primary_key`
    the key field (default "id"; str, int, UUID, or a generated id), `indexes` the indexes and
    SchemaMetadata kept for it, and `max_value_size` an optional cap on a record's encoded size.
    Datetimes must be timezone-aware and are stored in UTC.
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,  # a record is valid whenever it is written
        ser_json_bytes="base64",
        val_json_bytes="base64",
        ser_json_inf_nan="constants",
    )

    __fdbsync__: ClassVar[ModelInfo]
    _fdbsync_tenant: str | None = PrivateAttr(default=None)

    def __init_subclass__(
        cls,
        *,
        source: str | None = None,
        primary_key: str = "id",
        indexes: Sequence[Indexer] = (),
        max_value_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        source = cls.__name__.lower() if source is None else source
        if not _SOURCE.match(source):
            raise ModelDefinitionError(
                f"{cls.__name__}: source {source!r} must be 1-100 letters, digits, '_', '.', '-'"
            )
        if max_value_size is not None and max_value_size <= 0:
            raise ModelDefinitionError(f"{cls.__name__}: max_value_size must be positive")
        # Fields exist only after Pydantic builds the class; __pydantic_init_subclass__ checks.
        cls.__fdbsync__ = ModelInfo(source, primary_key, tuple(indexes), max_value_size)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        info = cls.__fdbsync__
        if info.primary_key not in cls.model_fields:
            raise ModelDefinitionError(
                f"{cls.__name__}: primary key field {info.primary_key!r} is not a field"
            )
        key_type = cls.model_fields[info.primary_key].annotation
        if not (
            isinstance(key_type, type)
            and issubclass(key_type, str | int | uuid.UUID | Versionstamp)
            and not issubclass(key_type, bool)
        ):
            raise ModelDefinitionError(
                f"{cls.__name__}.{info.primary_key}: a primary key is a str, int, UUID or "
                f"VersionstampId, not {key_type!r}"
            )
        aliased = [
            name
            for name, field in cls.model_fields.items()
            if field.alias or field.validation_alias or field.serialization_alias
        ]
        if aliased:
            raise ModelDefinitionError(
                f"{cls.__name__}: field aliases are not supported on stored models "
                f"({', '.join(aliased)}); alias the fields of an API model instead"
            )
        names = [indexer.name for indexer in info.indexes]
        for name in names:
            if names.count(name) > 1:
                raise ModelDefinitionError(f"{cls.__name__}: two indexes are named {name!r}")
        for indexer in info.indexes:
            indexer.check(cls)

    def __eq__(self, other: object) -> bool:
        """Records are equal when they are of one model and their fields are equal; the tenant
        they came from is not compared."""
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, as Pydantic models are

    @field_validator("*", mode="after")
    @classmethod
    def _datetimes_in_utc(cls, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError("datetimes must be timezone-aware (for example tzinfo=UTC)")
            return value.astimezone(dt.UTC)
        return value


def tenant_of(record: Model) -> str | None:
    """The tenant `record` was read from or written to ("" for a single-tenant repo); None for
    a record that was never stored."""
    return record._fdbsync_tenant


def primary_key_of(record: Model) -> Any:
    return getattr(record, record.__fdbsync__.primary_key)


def coerce_field(model: type[Model], name: str, value: Any) -> Any:
    """`value` validated as the field `name` of `model` would validate it on assignment: with
    the field's type, its validators and the model's configuration."""
    blank = _blank(model)
    try:
        model.__pydantic_validator__.validate_assignment(blank, name, value)
    except ValidationError:
        raise
    except Exception:  # a model validator that needs the other fields: the field alone
        return field_adapter(model, name).validate_python(value)
    return blank.__dict__[name]


@cache
def _blank(model: type[Model]) -> Model:
    """An unvalidated instance of `model`, reused to validate single fields by assignment
    (making one per call would run every default factory each time)."""
    return model.model_construct()


@cache
def field_adapter(model: type[Model], name: str) -> TypeAdapter[Any]:
    """Validation and serialisation of one field's type on its own, outside any model (no
    field or model validators: use `coerce_field` to validate a value)."""
    info = model.model_fields[name]
    annotated: Any = Annotated[info.annotation, info]  # keeps the field's validators
    return TypeAdapter(annotated, config=ConfigDict(arbitrary_types_allowed=True))
