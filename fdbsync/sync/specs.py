"""What a label syncs: `One` record, `Many` records by id, or `All` results of a query."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..data.model import Model
from ..data.query import Query

__all__ = ["All", "Label", "Many", "One", "WatchAction"]

WatchAction = Literal["inserts", "deletes", "collection", "updates", "changes"]


@dataclass(frozen=True)
class One:
    """The record with primary key `id` (or None) under `label`; follows create, update and
    delete."""

    label: str
    model: type[Model]
    id: Any


@dataclass(frozen=True)
class Many:
    """The records with these ids, in their order, under `label`: one watch per id. Ids with
    no record are left out of the list but stay watched. None or [] cancels the label."""

    label: str
    model: type[Model]
    ids: Sequence[Any] | None


@dataclass(frozen=True)
class All:
    """A query's results under `label`, read again when the SchemaMetadata counter
    `watch_action` moves: the model's own counters, or with `by`, those of one value."""

    label: str
    source: type[Model] | Query[Any]
    by: Mapping[str, Any] | None = None
    watch_action: WatchAction = "changes"


Label = One | Many | All
