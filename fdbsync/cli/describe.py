"""Operations and revisions as text, for `fdbsync history` and `fdbsync revision`."""

from __future__ import annotations

from ..data.keyspace import METADATA
from ..migrate.operations import CreateIndex, DropIndex, MigrateData, Operation
from ..migrate.revisions import History, Revision
from .autogen import plan

__all__ = ["describe_history", "describe_operation"]


def describe_operation(operation: Operation) -> str:
    match operation:
        case CreateIndex(source, name):
            return f"create {source}.{name}"
        case DropIndex(source, name, section):
            kind = "SchemaMetadata" if section == METADATA else "index"
            return f"drop {kind} {source}.{name}"
        case MigrateData(source, fn, batch_size):
            name = getattr(fn, "__qualname__", None) or repr(fn)
            return f"migrate data of {source} with {name} (batches of {batch_size} keys)"
    raise AssertionError(operation)  # pragma: no cover


def _steps(revision: Revision, direction: str) -> list[str]:
    lines = [f"      {describe_operation(operation)}" for operation in plan(revision, direction)]
    return [f"    {direction}:", *(lines or ["      nothing"])]


def describe_history(history: History) -> list[str]:
    """Every revision from the first to the head, with what its upgrade and downgrade do."""
    if not history.revisions:
        return ["no revisions yet: `fdbsync revision -m MESSAGE --autogenerate` makes the first"]
    lines = []
    for revision in history.revisions:
        head = "  (head)" if revision.id == history.head else ""
        lines.append(f"{revision.id}  {revision.message}{head}")
        lines.append(f"    after {revision.down or 'base'}, in {revision.path.name}")
        lines.extend(_steps(revision, "upgrade"))
        lines.extend(_steps(revision, "downgrade"))
    return lines
