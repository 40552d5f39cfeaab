"""What the migrations create compared with what the models declare: the indexes and
SchemaMetadata a new revision must create (`revision --autogenerate`, `check`).

The migrations' state is found by replaying each revision's recorded operations (creates minus
drops) without touching any database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..data.indexes import Indexer, SchemaMetadata
from ..data.keyspace import INDEXES
from ..data.model import Model
from ..migrate.errors import MigrationError
from ..migrate.operations import CreateIndex, DropIndex, Operation, Operations
from ..migrate.revisions import History, Revision

__all__ = [
    "Declared",
    "created",
    "declared",
    "missing",
    "plan",
    "unbalanced",
    "undeclared",
]

Name = tuple[str, str]  # (source, index name)


def plan(revision: Revision, direction: str) -> list[Operation]:
    """The operations `revision`'s upgrade (or downgrade) records, as Migrator.plan does."""
    op = Operations()
    steps = revision.upgrade if direction == "upgrade" else revision.downgrade
    try:
        steps(op)
    except Exception as error:
        raise MigrationError(
            f"{revision.path.name}: its {direction} failed: {type(error).__name__}: {error}"
        ) from error
    return op.planned


def _replay(existing: dict[Name, None], operations: Sequence[Operation]) -> None:
    for operation in operations:
        match operation:
            case CreateIndex(source, name):
                existing[(source, name)] = None
            case DropIndex(source, name, _):
                existing.pop((source, name), None)


def created(history: History) -> list[Name]:
    """The indexes and SchemaMetadata that exist once every revision is applied, in the order
    they were first created."""
    existing: dict[Name, None] = {}
    for revision in history.revisions:
        _replay(existing, plan(revision, "upgrade"))
    return list(existing)


def unbalanced(history: History) -> list[str]:
    """Revisions whose downgrade does not undo what their upgrade creates or drops."""
    found = []
    existing: dict[Name, None] = {}
    for revision in history.revisions:
        before = dict(existing)
        _replay(existing, plan(revision, "upgrade"))
        undone = dict(existing)
        _replay(undone, plan(revision, "downgrade"))
        if set(undone) != set(before):
            left = sorted(set(undone) ^ set(before))
            shown = ", ".join(f"{source}.{name}" for source, name in left)
            found.append(f"{revision.id} ({revision.path.name}): its downgrade leaves {shown}")
    return found


@dataclass(frozen=True)
class Declared:
    """One index or SchemaMetadata a model declares, and the lines that create and drop it."""

    model: type[Model]
    indexer: Indexer

    @property
    def name(self) -> Name:
        return self.model.__fdbsync__.source, self.indexer.name

    def describe(self) -> str:
        kind = "SchemaMetadata" if isinstance(self.indexer, SchemaMetadata) else "index"
        return f"{self.model.__name__} ({self.name[0]}) {kind} {self.indexer.name!r}"

    def _metadata_arguments(self) -> str | None:
        """The arguments naming this SchemaMetadata after its source, or None for an index."""
        indexer = self.indexer
        if not isinstance(indexer, SchemaMetadata):
            return None
        by = f", by={indexer.by!r}" if indexer.by else ""
        custom = indexer.name != SchemaMetadata(indexer.by).name
        return by + (f", name={indexer.name!r}" if custom else "")

    def create_line(self) -> str:
        source, name = self.name
        arguments = self._metadata_arguments()
        if arguments is not None:
            return f"op.create_schema_metadata({source!r}{arguments})"
        return f"op.create_index({source!r}, {name!r})"

    def drop_line(self) -> str:
        source, name = self.name
        arguments = self._metadata_arguments()
        if arguments is not None:
            return f"op.drop_schema_metadata({source!r}{arguments})"
        if self.indexer.section == INDEXES:
            return f"op.drop_index({source!r}, {name!r})"
        return (
            f"# drop {source!r} {name!r} by hand: its keys are in section "
            f"{self.indexer.section!r}, which no operation drops"
        )


def declared(models: Sequence[type[Model]]) -> list[Declared]:
    return [Declared(model, indexer) for model in models for indexer in model.__fdbsync__.indexes]


def missing(models: Sequence[type[Model]], history: History) -> list[Declared]:
    """What the models declare and no migration creates, in declaration order."""
    existing = set(created(history))
    return [item for item in declared(models) if item.name not in existing]


def undeclared(models: Sequence[type[Model]], history: History) -> list[Name]:
    """What the migrations create and no model declares (any more)."""
    wanted = {item.name for item in declared(models)}
    return [name for name in created(history) if name not in wanted]
