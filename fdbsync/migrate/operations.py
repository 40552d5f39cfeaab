"""What a revision does: operations recorded by `upgrade(op)` / `downgrade(op)`, run later.

Recording first lets the runner (and `fdbsync history`) see a revision's operations before
anything is changed. Operations name models by source, so a revision file need not import the
application's models; the runner finds them among the repo's models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..data.indexes import SchemaMetadata
from ..data.model import Model

__all__ = ["CreateIndex", "DropIndex", "MigrateData", "Operation", "Operations"]


@dataclass(frozen=True)
class CreateIndex:
    """Build the index (or SchemaMetadata) `name` that the model of `source` declares."""

    source: str
    name: str


@dataclass(frozen=True)
class DropIndex:
    """Remove every key of index `name` of `source` (section "i"), or of its SchemaMetadata
    counters (section "m"), and its build state."""

    source: str
    name: str
    section: str = "i"


@dataclass(frozen=True)
class MigrateData:
    """Apply `fn` to every record of `source`, batch by batch: it returns the record to store
    (changed or not) or None to delete it."""

    source: str
    fn: Callable[[Any], Any]
    batch_size: int = 500


Operation = CreateIndex | DropIndex | MigrateData


def _source(model_or_source: str | type[Model]) -> str:
    if isinstance(model_or_source, str):
        return model_or_source
    return model_or_source.__fdbsync__.source


class Operations:
    """The `op` a revision's upgrade and downgrade receive."""

    def __init__(self) -> None:
        self.planned: list[Operation] = []

    def create_index(self, source: str | type[Model], name: str) -> None:
        self.planned.append(CreateIndex(_source(source), name))

    def create_schema_metadata(
        self, source: str | type[Model], by: Sequence[str] = (), *, name: str | None = None
    ) -> None:
        self.planned.append(CreateIndex(_source(source), SchemaMetadata(by, name=name).name))

    def drop_index(self, source: str | type[Model], name: str) -> None:
        self.planned.append(DropIndex(_source(source), name, "i"))

    def drop_schema_metadata(
        self, source: str | type[Model], by: Sequence[str] = (), *, name: str | None = None
    ) -> None:
        self.planned.append(DropIndex(_source(source), SchemaMetadata(by, name=name).name, "m"))

    def migrate_data(
        self, source: str | type[Model], fn: Callable[[Any], Any], *, batch_size: int = 500
    ) -> None:
        self.planned.append(MigrateData(_source(source), fn, batch_size))
