"""Moving tenants between revisions for `upgrade`, `downgrade` and `current`: which tenants a
command names, one revision at a time, with the progress of index builds and data migrations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..data.indexes import SchemaMetadata
from ..data.model import Model
from ..data.repo import Repo
from ..migrate.errors import MigrationError
from ..migrate.operations import CreateIndex, MigrateData, Operation
from ..migrate.revisions import History
from ..migrate.runner import Migrator
from .autogen import plan
from .errors import CliError
from .progress import MigrationProgress, Progress

__all__ = ["Runner", "Target", "select_targets"]


@dataclass(frozen=True)
class Target:
    """One tenant to migrate ("" for the single-tenant repo) and its repo."""

    tenant: str
    repo: Repo

    @property
    def prefix(self) -> str:
        return f"{self.tenant}: " if self.tenant else ""


async def select_targets(repo: Repo, tenant: str | None, all_tenants: bool) -> list[Target]:
    """The tenants `--tenant` / `--all-tenants` name, or the single-tenant repo."""
    if tenant is not None and all_tenants:
        raise CliError("give --tenant NAME or --all-tenants, not both")
    if not repo.multi_tenant:
        if tenant is not None or all_tenants:
            raise CliError(
                "this project is single-tenant: --tenant and --all-tenants need "
                "multi_tenant = true in [tool.fdbsync]"
            )
        return [Target("", repo)]
    if tenant is not None:
        return [Target(tenant, await repo.tenants.open(tenant))]
    if all_tenants:
        return [Target(name, repo.tenants.bind(name)) for name in await repo.tenants.list()]
    raise CliError(
        "this project is multi-tenant (multi_tenant = true): give --tenant NAME or --all-tenants"
    )


async def _record_count(tenant: Repo, model: type[Model]) -> int | None:
    """The model's record count from its SchemaMetadata() counters, when it has ready ones."""
    for indexer in model.__fdbsync__.indexes:
        if isinstance(indexer, SchemaMetadata) and not indexer.by:
            states = await tenant.index_states(model)
            if states.get(indexer.name) == "ready":
                return (await tenant.counters(model)).collection
    return None


class Runner:
    """Runs `history` against targets of `repo`, telling `echo` what it did."""

    def __init__(
        self, repo: Repo, history: History, progress: Progress, echo: Callable[[str], None]
    ) -> None:
        self.repo, self.history, self.echo = repo, history, echo
        self.callback = MigrationProgress(progress)
        self.migrator = Migrator(repo, history, progress=self.callback)
        self._models = {model.__fdbsync__.source: model for model in repo.models or ()}

    def describe(self, revision: str | None) -> str:
        """A revision id as `current` shows it."""
        if revision is None:
            return "base (no revision applied)"
        known = {item.id: item for item in self.history.revisions}
        if revision not in known:
            return f"{revision} (not in the migrations folder)"
        where = "head" if revision == self.history.head else f"behind the head {self.history.head}"
        return f"{revision} {known[revision].message} ({where})"

    async def current(self, target: Target) -> str | None:
        revision = await self.migrator.current(target.repo)
        if revision is not None and revision not in {r.id for r in self.history.revisions}:
            who = f"tenant {target.tenant!r}" if target.tenant else "the database"
            raise MigrationError(
                f"{who} is at revision {revision!r}, which the migrations folder does not have"
            )
        return revision

    async def _follow(self, tenant: Repo, operations: Sequence[Operation]) -> None:
        """Name the progress of each index build and data migration of `operations`, with the
        records it will visit where the SchemaMetadata counters tell (for the ETA)."""
        totals: dict[str, int | None] = {}
        names: dict[str, str] = {}
        for operation in operations:
            match operation:
                case CreateIndex(source, name):
                    names[name] = f"build {source}.{name}"
                    model = self._models.get(source)
                    indexer = None if model is None else _indexer(model, name)
                    if isinstance(indexer, SchemaMetadata):
                        count: int | None = 0  # nothing to visit
                    else:
                        count = None if model is None else await _record_count(tenant, model)
                case MigrateData(source):
                    model = self._models.get(source)
                    if model is None:
                        continue
                    name = f"{model.__name__} data"
                    names[name] = f"migrate {source} data"
                    count = await _record_count(tenant, model)
                case _:
                    continue
            totals[name] = count if totals.get(name, count) == count else None
        self.callback.totals, self.callback.names = totals, names

    async def upgrade(self, target: Target, to: str) -> None:
        current = await self.current(target)
        direction, revisions = self.history.steps(current, to)
        if direction != "upgrade":
            raise MigrationError(
                f"{target.prefix}{to!r} is below the current revision {current}: use downgrade"
            )
        if not revisions:
            self.echo(f"{target.prefix}already at {self.describe(current)}")
            return
        self.callback.prefix = target.prefix
        for revision in revisions:
            await self._follow(target.repo, plan(revision, "upgrade"))
            try:
                await self.migrator.upgrade(target.repo, revision.id)
            finally:
                self.callback.close()
            self.echo(f"{target.prefix}upgraded to {revision.id} {revision.message}")

    async def downgrade(self, target: Target, to: str) -> None:
        current = await self.current(target)
        direction, revisions = self.history.steps(current, to)
        if direction != "downgrade" or not revisions:
            if self.history.resolve(to) == current:
                self.echo(f"{target.prefix}already at {self.describe(current)}")
                return
            raise MigrationError(
                f"{target.prefix}{to!r} is above the current revision {current}: use upgrade"
            )
        self.callback.prefix = target.prefix
        for revision in revisions:
            await self._follow(target.repo, plan(revision, "downgrade"))
            try:
                await self.migrator.downgrade(target.repo, revision.down or "base")
            finally:
                self.callback.close()
            self.echo(
                f"{target.prefix}downgraded {revision.id} {revision.message} "
                f"(now at {revision.down or 'base'})"
            )


def _indexer(model: type[Model], name: str) -> object:
    try:
        return model.__fdbsync__.index(name)
    except LookupError:
        return None
