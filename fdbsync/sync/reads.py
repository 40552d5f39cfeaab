"""Shared reads: one read of the database however many sessions show its result.

A `SharedRead` knows the key whose watch says it may be stale (a record's key, or a
SchemaMetadata counter), its latest result, the read version of that result, and the value the
watched key held then (its token: equal tokens mean an unchanged result). Two sessions that
sync the same record, or equal queries in one tenant, share one `SharedRead`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable
from typing import Any

from ..data.model import Model
from ..data.query import Query
from ..data.repo import Repo

__all__ = ["QueryRead", "RecordRead", "SharedRead", "fetch_all"]


class SharedRead:
    """One read, its watched key and its latest result."""

    __slots__ = ("fired_at", "identity", "key", "repo", "sessions", "token", "value", "version")

    def __init__(self, repo: Repo, key: bytes, identity: Hashable) -> None:
        self.repo = repo  # bound to the read's tenant
        self.key = key
        self.identity = identity
        self.value: Any = None
        self.token: bytes | None = None
        self.version = -1  # the read version of `value`; -1 until first read
        self.sessions: dict[Any, int] = {}  # session -> how many of its labels use this read
        self.fired_at: float | None = None  # loop time its watch fired, until it is re-read

    @property
    def tenant(self) -> str | None:
        return self.repo.tenant

    def settle(self, value: Any, token: bytes | None, version: int) -> bool:
        """Take a result read at `version`; whether the result changed (an older one is
        ignored)."""
        if version <= self.version:
            return False
        changed = self.version < 0 or value != self.value
        self.token, self.version = token, version
        if changed:
            self.value = value  # a new object only when changed: sessions compare identity
        return changed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity!r} v{self.version}>"


class RecordRead(SharedRead):
    """One record (or None) by primary key; watched at the record's key."""

    __slots__ = ("model", "primary_key")

    def __init__(self, repo: Repo, model: type[Model], primary_key: Any) -> None:
        key = repo.record_key(model, primary_key)
        super().__init__(repo, key, ("record", key))
        self.model = model
        self.primary_key = primary_key


class QueryRead(SharedRead):
    """A query's results; watched at one SchemaMetadata counter."""

    __slots__ = ("query",)

    def __init__(self, repo: Repo, query: Query[Any], counter_key: bytes) -> None:
        super().__init__(repo, counter_key, ("query", query, counter_key))
        self.query = query


async def fetch_all(tx: Repo, reads: Iterable[SharedRead]) -> dict[SharedRead, Any]:
    """Every read's result in transaction `tx`: the records of one model in one get_many,
    each query on its own, all issued together. A read that fails maps to its exception, so
    one bad query does not spoil the others."""
    by_model: dict[type[Model], list[RecordRead]] = {}
    queries: list[QueryRead] = []
    for read in reads:
        if isinstance(read, RecordRead):
            by_model.setdefault(read.model, []).append(read)
        else:
            assert isinstance(read, QueryRead)
            queries.append(read)
    models = list(by_model.items())
    outcomes = await asyncio.gather(
        *(tx.get_many(model, [r.primary_key for r in group]) for model, group in models),
        *(tx.all(read.query) for read in queries),
        return_exceptions=True,
    )
    results: dict[SharedRead, Any] = {}
    for (_, group), found in zip(models, outcomes, strict=False):
        for index, read in enumerate(group):
            results[read] = found if isinstance(found, BaseException) else found[index]
    for read, found in zip(queries, outcomes[len(models) :], strict=True):
        results[read] = found
    return results
