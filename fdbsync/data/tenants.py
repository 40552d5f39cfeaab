"""Tenants: named, isolated keyspaces in one database, and the registry that lists them."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING

from ..engine.base import Transaction
from ..engine.keys import unpack
from .errors import TenancyError, TenantExistsError, TenantNotFoundError
from .keyspace import DATA_SECTIONS, TenantSpace, tenant_registry_key, tenant_registry_range

if TYPE_CHECKING:
    from .repo import Repo

__all__ = ["Tenants"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise TenancyError(
            f"tenant name {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


class Tenants:
    """`repo.tenants`: create, open, list, clear and delete the tenants of a multi-tenant repo."""

    def __init__(self, repo: Repo) -> None:
        self._repo = repo

    def _engine_repo(self) -> Repo:
        if not self._repo.multi_tenant:
            raise TenancyError("this repo is single-tenant: create it with multi_tenant=True")
        return self._repo

    def _bound(self, name: str) -> Repo:
        repo = self._engine_repo()
        return repo._bind(space=TenantSpace(name, repo.engine.limits.key_size))

    async def create(self, name: str) -> Repo:
        """Register a new tenant and return the repo bound to it (TenantExistsError if taken)."""
        check_name(name)
        engine = self._engine_repo().engine
        created = json.dumps({"created": dt.datetime.now(dt.UTC).isoformat()}).encode()

        async def op(tr: Transaction) -> None:
            key = tenant_registry_key(name)
            if await tr.get(key) is not None:
                raise TenantExistsError(f"tenant {name!r} already exists")
            tr.set(key, created)

        await engine.transact(op)
        return self._bound(name)

    async def open(self, name: str) -> Repo:
        """The repo bound to an existing tenant (TenantNotFoundError if there is none)."""
        if not await self.exists(name):
            raise TenantNotFoundError(f"tenant {name!r} does not exist")
        bound = self._bound(name)
        if self._repo.on_open is not None:
            await self._repo.on_open(bound)
        return bound

    def bind(self, name: str) -> Repo:
        """The repo bound to tenant `name`, without checking that it exists: reads of a missing
        tenant find nothing, and writes to it fail. For callers that checked already."""
        check_name(name)
        return self._bound(name)

    async def exists(self, name: str) -> bool:
        check_name(name)

        async def op(tr: Transaction) -> bool:
            return await tr.get(tenant_registry_key(name)) is not None

        return await self._engine_repo().engine.transact(op)

    async def list(self) -> list[str]:
        """Every tenant's name, in order."""
        begin, end = tenant_registry_range()

        async def op(tr: Transaction) -> list[str]:
            rows = await tr.get_range(begin, end).to_list()
            return [unpack(kv.key, len(begin))[0] for kv in rows]

        return await self._engine_repo().engine.transact(op)

    async def clear(self, name: str) -> None:
        """Delete every record, index entry and counter of a tenant; keep the tenant."""
        await self._wipe(name, unregister=False)

    async def delete(self, name: str) -> None:
        """Delete a tenant and everything in it."""
        await self._wipe(name, unregister=True)

    async def _wipe(self, name: str, *, unregister: bool) -> None:
        check_name(name)
        repo = self._engine_repo()
        space = TenantSpace(name, repo.engine.limits.key_size)

        async def op(tr: Transaction) -> None:
            key = tenant_registry_key(name)
            if await tr.get(key) is None:
                raise TenantNotFoundError(f"tenant {name!r} does not exist")
            if unregister:
                tr.clear_range(*space.range())
                tr.clear(key)
            else:  # index definitions and build states stay: the emptied indexes are complete
                for section in DATA_SECTIONS:
                    tr.clear_range(*space.section(section))

        await repo.engine.transact(op)
