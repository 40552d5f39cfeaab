"""Applying revisions to tenants: each tenant records the revision it is at.

`Migrator(repo, history)` upgrades or downgrades one tenant, every tenant, or a single-tenant
repo. Index builds run online (see `Repo.build_indexes`); data migrations keep a cursor per
operation, and every batch reads and moves it in its own transaction, so a batch is applied
once however many processes migrate the same tenant, and a migration that dies resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..data.concurrent import gather_all
from ..data.model import Model
from ..data.repo import Repo
from .errors import MigrationError, MigrationRequiredError
from .operations import CreateIndex, DropIndex, MigrateData, Operation, Operations
from .revisions import History, Revision

__all__ = ["Migrator"]

Progress = Callable[[str, int], None]

#: Bytes of records one data-migration batch reads (and may rewrite): well inside a transaction.
_BATCH_BYTES = 2_000_000


def _revision_in(state: bytes | None) -> str | None:
    return None if state is None else json.loads(state)["revision"]


class Migrator:
    """Runs `history`'s revisions against the tenants of `repo` (its models must be given)."""

    def __init__(
        self,
        repo: Repo,
        history: History,
        *,
        batch_size: int = 1000,
        claim_timeout: float = 30.0,
        wait: float = 60.0,
        progress: Progress | None = None,
    ) -> None:
        if repo.models is None:
            raise MigrationError("migrations need the repo's models: Repo(engine, models=[...])")
        self.repo = repo
        self.history = history
        self.batch_size, self.claim_timeout, self.wait = batch_size, claim_timeout, wait
        self.progress = progress
        self._models = {model.__fdbsync__.source: model for model in repo.models}

    def _model(self, source: str) -> type[Model]:
        model = self._models.get(source)
        if model is None:
            raise MigrationError(f"no model with source {source!r} among the repo's models")
        return model

    def attach(self, *, upgrade: bool = True) -> None:
        """Make `repo.tenants.open` bring each tenant to head first (`upgrade`), or refuse a
        tenant that is behind with MigrationRequiredError."""

        async def on_open(tenant: Repo) -> None:
            await self.ensure_current(tenant, upgrade=upgrade)

        self.repo.on_open = on_open

    # -- state -------------------------------------------------------------------------------

    async def current(self, tenant: Repo) -> str | None:
        """The revision `tenant` is at (None: none applied)."""
        key = tenant.keyspace.key("s", "migration")

        async def read(tx: Repo) -> str | None:
            stored = await tx.transaction_handle.get(key)
            return None if stored is None else json.loads(stored)["revision"]

        return await tenant.transaction(read)

    async def _set_current(
        self, tenant: Repo, revision: str | None, finished: Revision, expected: str | None
    ) -> None:
        """Record `revision` as `tenant`'s if it is still at `expected` (another migrator may
        have moved it meanwhile); the cursors of `finished`'s data migrations go in the same
        transaction, so running it again starts over."""
        space = tenant.keyspace
        key = space.key("s", "migration")
        value = json.dumps({"revision": revision}).encode()

        async def write(tx: Repo) -> None:
            raw = tx.transaction_handle
            if _revision_in(await raw.get(key)) != expected:
                return
            raw.set(key, value)
            if finished is not None:
                cursors = space.key("s", "migration", "data", finished.id)
                raw.clear_range(cursors, cursors + b"\xff")

        await tenant.transaction(write)

    async def ensure_current(self, tenant: Repo, *, upgrade: bool) -> None:
        """Bring `tenant` to head (`upgrade`), or raise MigrationRequiredError if it is behind."""
        current = await self.current(tenant)
        if current == self.history.head:
            return
        if not upgrade:
            raise MigrationRequiredError(
                f"tenant {tenant.tenant!r} is at revision {current!r}, the migrations' head is "
                f"{self.history.head!r}: run `fdbsync upgrade`"
            )
        await self.upgrade(tenant)

    # -- moving ------------------------------------------------------------------------------

    async def upgrade(self, tenant: Repo, target: str = "head") -> list[str]:
        """Apply the revisions from `tenant`'s current one up to `target`; their ids."""
        direction, revisions = self.history.steps(await self.current(tenant), target)
        if direction != "upgrade":
            raise MigrationError(f"{target!r} is below the current revision: use downgrade")
        for revision in revisions:
            await self._apply(tenant, revision, "upgrade", revision.down)
            await self._set_current(tenant, revision.id, revision, revision.down)
        return [revision.id for revision in revisions]

    async def downgrade(self, tenant: Repo, target: str) -> list[str]:
        """Undo the revisions above `target` ("base": all of them); their ids."""
        direction, revisions = self.history.steps(await self.current(tenant), target)
        if direction != "downgrade":
            raise MigrationError(f"{target!r} is not below the current revision: use upgrade")
        for revision in revisions:
            await self._apply(tenant, revision, "downgrade", revision.id)
            await self._set_current(tenant, revision.down, revision, revision.id)
        return [revision.id for revision in revisions]

    def plan(self, revision: Revision, direction: str) -> list[Operation]:
        """The operations `revision`'s upgrade (or downgrade) records."""
        op = Operations()
        (revision.upgrade if direction == "upgrade" else revision.downgrade)(op)
        return op.planned

    async def _apply(
        self, tenant: Repo, revision: Revision, direction: str, expected: str | None
    ) -> None:
        """Run `revision`'s operations; `expected` is the revision the tenant is at meanwhile
        (a data migration stops if another migrator has moved it on)."""
        for number, operation in enumerate(self.plan(revision, direction)):
            match operation:
                case CreateIndex(source, name):
                    await tenant.build_indexes(
                        self._model(source),
                        [name],
                        batch_size=self.batch_size,
                        claim_timeout=self.claim_timeout,
                        wait=self.wait,
                        progress=self.progress,
                    )
                case DropIndex(source, name, section):
                    await self._drop(tenant, source, name, section)
                case MigrateData(source, fn, batch_size):
                    where = (revision.id, direction, number)
                    await self._migrate_data(
                        tenant, self._model(source), fn, batch_size, where, expected
                    )

    async def _drop(self, tenant: Repo, source: str, name: str, section: str) -> None:
        space = tenant.keyspace
        entries = space.index(section, source, name, source).range()
        state = space.index_state(source, name)

        async def drop(tx: Repo) -> None:
            tx.transaction_handle.clear_range(*entries)
            tx.transaction_handle.clear(state)

        await tenant.transaction(drop)

    async def _migrate_data(
        self,
        tenant: Repo,
        model: type[Model],
        fn: Callable[[Any], Any],
        batch_size: int,
        where: tuple[str, str, int],
        expected: str | None,
    ) -> None:
        cursor_key = tenant.keyspace.key("s", "migration", "data", *where)
        state_key = tenant.keyspace.key("s", "migration")
        done_count = 0

        async def batch(tx: Repo) -> tuple[bool, int]:
            raw = tx.transaction_handle
            stored, state = await gather_all(raw.get(cursor_key), raw.get(state_key))
            if stored == b"done" or _revision_in(state) != expected:
                return True, 0  # done, here or by another migrator that moved the tenant on
            cursor = None if stored is None else bytes.fromhex(stored.decode())
            records, after = await tx.page(model, cursor, keys=batch_size, max_bytes=_BATCH_BYTES)
            for record in records:
                changed = fn(record.model_copy(deep=True))
                if changed is None:
                    await tx.delete(record)
                elif changed != record:
                    await tx.update(record, dict(changed))
            raw.set(cursor_key, b"done" if after is None else after.hex().encode())
            return after is None, len(records)

        while True:
            finished, count = await tenant.transaction(batch)
            done_count += count
            if self.progress is not None and count:
                self.progress(f"{model.__name__} data", done_count)
            if finished:
                return
