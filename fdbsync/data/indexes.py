"""Indexes: the indexer protocol, value indexes (`Index`) and `SchemaMetadata` counters.

An indexer keeps derived keys in step with a model's records. The Repo calls `set` when a
record is inserted, `clear` when it is deleted and `update` when it changes, all inside the
writing transaction, and `range` to find the keys that answer a query. Applications can write
their own index kinds the same way. Index entries end with the record's primary key.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..engine.base import Transaction
from ..engine.keys import pack
from .errors import IndexValueError, ModelDefinitionError
from .keyspace import INDEXES, METADATA, IndexSpace
from .model import Model, primary_key_of
from .ordering import index_element
from .query import Between, Gt, Gte, Lt, Lte, Query

__all__ = ["COUNTERS", "Counters", "Index", "Indexer", "SchemaMetadata"]


class Indexer(abc.ABC):
    """An index kind. Subclass it for your own; `Index` and `SchemaMetadata` are built on it."""

    section: ClassVar[str] = INDEXES
    name: str

    @abc.abstractmethod
    def check(self, model: type[Model]) -> None:
        """Raise ModelDefinitionError when this index cannot work on `model`."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able definition, stored with the index's build state."""

    def create_range(self, records: tuple[bytes, bytes]) -> tuple[bytes, bytes] | None:
        """The records a build must visit (all of them by default), or None for none."""
        return records

    @abc.abstractmethod
    def set(self, tr: Transaction, space: IndexSpace, record: Model) -> None:
        """Add `record`'s keys (it was inserted)."""

    @abc.abstractmethod
    def clear(self, tr: Transaction, space: IndexSpace, record: Model) -> None:
        """Remove `record`'s keys (it was deleted)."""

    def update(self, tr: Transaction, space: IndexSpace, old: Model, new: Model) -> None:
        """Move keys from `old` to `new` (the same record, changed)."""
        self.clear(tr, space, old)
        self.set(tr, space, new)

    def range(self, space: IndexSpace, query: Query[Any]) -> tuple[bytes, bytes] | None:
        """The entries that answer `query`, in its order; None when this index cannot."""
        return None


# Every key that extends a packed tuple sorts below the packed tuple + 0xff: an element's first
# byte (its type code) is never 0xff. strinc() would not do: "a" packs to a prefix of "a\x00".
_AFTER = b"\xff"


def _elements(model: type[Model], fields: Sequence[str], record: Model) -> tuple[Any, ...]:
    return tuple(_element(model, name, getattr(record, name)) for name in fields)


def _element(model: type[Model], name: str, value: Any) -> Any:
    try:
        return index_element(value)
    except IndexValueError as error:
        raise IndexValueError(f"{model.__name__}.{name}: {error}") from None


def _existing(entry: Callable[[Model], tuple[Any, ...]], record: Model) -> tuple[Any, ...] | None:
    """The entry a stored record has, or None: a value that cannot be indexed (a NaN stored
    before the index was declared) never got one, and must not stop an update or delete."""
    try:
        return entry(record)
    except IndexValueError:
        return None


def _check_fields(kind: str, model: type[Model], fields: Sequence[str]) -> None:
    unknown = [name for name in fields if name not in model.model_fields]
    if unknown:
        raise ModelDefinitionError(f"{model.__name__}: {kind} names unknown field(s) {unknown}")
    if len(set(fields)) != len(fields):
        raise ModelDefinitionError(f"{model.__name__}: {kind} names a field twice: {fields}")


@dataclass(frozen=True, init=False)
class Index(Indexer):
    """Entries ordered by the values of `fields`, then the primary key.

    Answers queries with equality on a prefix of `fields` and at most one range on the next
    field; results come in index order. The name defaults to the fields joined with "_".
    """

    fields: tuple[str, ...]
    name: str

    def __init__(self, *fields: str, name: str | None = None) -> None:
        if not fields:
            raise ModelDefinitionError("Index needs at least one field")
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "name", name or "_".join(fields))

    def check(self, model: type[Model]) -> None:
        _check_fields(f"Index {self.name!r}", model, self.fields)

    def describe(self) -> dict[str, Any]:
        return {"kind": "index", "fields": list(self.fields)}

    def _entry(self, record: Model) -> tuple[Any, ...]:
        return (*_elements(type(record), self.fields, record), primary_key_of(record))

    def set(self, tr: Transaction, space: IndexSpace, record: Model) -> None:
        space.set(tr, self._entry(record))

    def clear(self, tr: Transaction, space: IndexSpace, record: Model) -> None:
        entry = _existing(self._entry, record)
        if entry is not None:
            space.clear(tr, entry)

    def update(self, tr: Transaction, space: IndexSpace, old: Model, new: Model) -> None:
        before, after = _existing(self._entry, old), self._entry(new)
        if before != after:
            if before is not None:
                space.clear(tr, before)
            space.set(tr, after)

    def range(self, space: IndexSpace, query: Query[Any]) -> tuple[bytes, bytes] | None:
        equal = query.equalities
        ranged = query.range
        count = len(equal)
        if set(self.fields[:count]) != set(equal):
            return None
        if ranged is not None and (len(self.fields) <= count or self.fields[count] != ranged[0]):
            return None
        model = query.model
        prefix = pack(
            tuple(_element(model, name, equal[name]) for name in self.fields[:count]),
            space.prefix,
        )
        if ranged is None:
            return prefix, prefix + _AFTER
        name, condition = ranged

        def at(value: Any) -> bytes:
            return pack((_element(model, name, value),), prefix)

        # Entries whose value is None sort first; a range never includes them.
        after_none = pack((None,), prefix) + _AFTER
        match condition:
            case Gt(value):
                return at(value) + _AFTER, prefix + _AFTER
            case Gte(value):
                return at(value), prefix + _AFTER
            case Lt(value):
                return after_none, at(value)
            case Lte(value):
                return after_none, at(value) + _AFTER
            case Between(low, high):
                return at(low), at(high) + _AFTER
        raise AssertionError(condition)  # pragma: no cover


COUNTERS = ("inserts", "deletes", "collection", "updates", "changes")


@dataclass(frozen=True, slots=True)
class Counters:
    """SchemaMetadata's counters for a model, or for one value of its `by` fields."""

    inserts: int = 0
    deletes: int = 0
    collection: int = 0
    updates: int = 0
    changes: int = 0


_INSERTED = ("inserts", "collection", "changes")
_DELETED = ("deletes", "collection", "changes")
_UPDATED = ("updates", "changes")


@dataclass(frozen=True, init=False)
class SchemaMetadata(Indexer):
    """Atomic-add counters of inserts, deletes, collection, updates and changes.

    Without `by`, one set of counters for the model; with `by=("team",)`, one per team value.
    Watching a counter is how a page learns that a collection (or one team of it) changed.
    Nothing needs building: the counters count from the moment they are declared.
    """

    section: ClassVar[str] = METADATA
    by: tuple[str, ...]
    name: str

    def __init__(self, by: Sequence[str] = (), *, name: str | None = None) -> None:
        object.__setattr__(self, "by", tuple(by))
        object.__setattr__(self, "name", name or "_".join(("meta", "by", *by) if by else ("meta",)))

    def check(self, model: type[Model]) -> None:
        _check_fields(f"SchemaMetadata {self.name!r}", model, self.by)

    def describe(self) -> dict[str, Any]:
        return {"kind": "schema_metadata", "by": list(self.by)}

    def create_range(self, records: tuple[bytes, bytes]) -> tuple[bytes, bytes] | None:
        return None

    def values_of(self, record: Model) -> tuple[Any, ...]:
        return _elements(type(record), self.by, record)

    def counter_key(self, space: IndexSpace, values: tuple[Any, ...], counter: str) -> bytes:
        """The key of one counter; `values` are index elements of the `by` fields."""
        return space.key((*values, counter))

    def _bump(
        self, tr: Transaction, space: IndexSpace, values: tuple[Any, ...], counters: Sequence[str]
    ) -> None:
        for counter in counters:
            space.add(tr, (*values, counter), 1)

    def set(self, tr: Transaction, space: IndexSpace, record: Model) -> None:
        self._bump(tr, space, self.values_of(record), _INSERTED)

    def clear(self, tr: Transaction, space: IndexSpace, record: Model) -> None:
        values = _existing(self.values_of, record)
        if values is not None:
            self._bump(tr, space, values, _DELETED)

    def update(self, tr: Transaction, space: IndexSpace, old: Model, new: Model) -> None:
        before, after = _existing(self.values_of, old), self.values_of(new)
        if before == after:
            self._bump(tr, space, after, _UPDATED)
        else:
            if before is not None:
                self._bump(tr, space, before, ("deletes", "collection", "updates", "changes"))
            self._bump(tr, space, after, ("inserts", "collection", "updates", "changes"))
