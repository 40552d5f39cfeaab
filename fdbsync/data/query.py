"""Queries as values: which records of a model, in which order, how many.

A `Query` is immutable, hashable and compared by value, so two equal queries built apart are
one query: the sync layer uses that to read a query once for every page that shows it.
Conditions are equalities on fields, plus at most one range (`Gt`, `Gte`, `Lt`, `Lte`,
`Between`) on the field after them in an index. Values are validated against the fields' types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from .errors import QueryError
from .model import Model, coerce_field

__all__ = ["Between", "Gt", "Gte", "Lt", "Lte", "Query", "RangeCondition"]

M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class _Bound:
    value: Any


class Gt(_Bound):
    """Greater than `value`."""

    __slots__ = ()


class Gte(_Bound):
    """Greater than or equal to `value`."""

    __slots__ = ()


class Lt(_Bound):
    """Less than `value`."""

    __slots__ = ()


class Lte(_Bound):
    """Less than or equal to `value`."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Between:
    """From `low` to `high`, both included."""

    low: Any
    high: Any


RangeCondition = Gt | Gte | Lt | Lte | Between
_RANGES = (Gt, Gte, Lt, Lte, Between)


def coerce_value(model: type[Model], name: str, value: Any) -> Any:
    """`value` as field `name` of `model` holds it (QueryError naming the field if it can't)."""
    try:
        return coerce_field(model, name, value)
    except ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise QueryError(
            f"{model.__name__}.{name}: query value {value!r} does not fit the field ({problem})"
        ) from None


def _bound(model: type[Model], name: str, value: Any) -> Any:
    if value is None:
        raise QueryError(f"{model.__name__}.{name}: a range bound cannot be None")
    return coerce_value(model, name, value)


def _normalise(model: type[Model], name: str, condition: Any) -> Any:
    if name not in model.model_fields:
        raise QueryError(f"{model.__name__} has no field {name!r} to query on")
    match condition:
        case Between(low, high):
            return Between(_bound(model, name, low), _bound(model, name, high))
        case Gt(value) | Gte(value) | Lt(value) | Lte(value):
            return type(condition)(_bound(model, name, value))
        case None:
            return None
    return coerce_value(model, name, condition)


@dataclass(frozen=True)
class Query(Generic[M]):
    """Records of `model` matching `by`, in key order (or descending), at most `limit`.

    Build with `Query(Person, {"team": "red"})` or `Query(Person).where(team="red")`.
    """

    model: type[M]
    by: Mapping[str, Any] | tuple[tuple[str, Any], ...] = field(default=())
    limit: int | None = None
    descending: bool = False

    def __post_init__(self) -> None:
        items = self.by.items() if isinstance(self.by, Mapping) else self.by
        normalised = tuple(
            sorted((name, _normalise(self.model, name, value)) for name, value in items)
        )
        ranges = [name for name, value in normalised if isinstance(value, _RANGES)]
        if len(ranges) > 1:
            raise QueryError(
                f"{self.model.__name__}: a query takes at most one range condition, got "
                f"{', '.join(ranges)}"
            )
        if self.limit is not None and self.limit < 0:
            raise QueryError(f"{self.model.__name__}: limit must be at least 0")
        try:
            hash(normalised)
        except TypeError:
            raise QueryError(
                f"{self.model.__name__}: query values must be hashable (str, int, ...)"
            ) from None
        object.__setattr__(self, "by", normalised)

    @property
    def conditions(self) -> tuple[tuple[str, Any], ...]:
        """The conditions, sorted by field name."""
        assert isinstance(self.by, tuple)
        return self.by

    @property
    def equalities(self) -> dict[str, Any]:
        return {n: v for n, v in self.conditions if not isinstance(v, _RANGES)}

    @property
    def range(self) -> tuple[str, RangeCondition] | None:
        for name, value in self.conditions:
            if isinstance(value, _RANGES):
                return name, value
        return None

    def where(self, **conditions: Any) -> Query[M]:
        """This query with more conditions (a field named again takes the new condition)."""
        return replace(self, by={**dict(self.conditions), **conditions})

    def take(self, limit: int | None) -> Query[M]:
        """This query returning at most `limit` records."""
        return replace(self, limit=limit)

    def desc(self, descending: bool = True) -> Query[M]:
        """This query in descending order."""
        return replace(self, descending=descending)

    def __repr__(self) -> str:
        parts = [self.model.__name__]
        parts += [f"{name}={value!r}" for name, value in self.conditions]
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        if self.descending:
            parts.append("descending")
        return f"Query({', '.join(parts)})"
