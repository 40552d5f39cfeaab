"""The Repo: records in, records out, in transactions, for one tenant at a time.

A `Repo` is bound to a tenant (a single-tenant repo to the tenant ""), and `transaction()`
binds a copy to one engine transaction, so every call inside joins it. Outside a transaction,
each call is a transaction of its own, retried on conflict.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..engine.base import Engine, Transaction, Watch
from ..engine.keys import Versionstamp, unpack
from .concurrent import gather_all
from .errors import (
    DuplicateKeyError,
    FieldError,
    IndexNotReadyError,
    MissingIndexError,
    ModelDefinitionError,
    QueryError,
    RecordNotFoundError,
    TenancyError,
    TenantNotFoundError,
    UnknownModelError,
    ValueTooLargeError,
)
from .indexes import COUNTERS, Counters, Index, Indexer, SchemaMetadata
from .keyspace import IndexSpace, TenantSpace, tenant_registry_key
from .model import Model, primary_key_of, tenant_of
from .query import Query, coerce_value
from .records import RecordKeys, Stored, encode_record
from .scoped import ScopedTransaction

__all__ = ["Repo"]

M = TypeVar("M", bound=Model)
T = TypeVar("T")

READY = "ready"
BUILDING = "building"
_BUILD_FIELDS = ("cursor", "owner", "expires", "done")
_DROPPED = "dropped"  # a build's news that the index was dropped under it
#: Bytes of records one build batch reads at most: decoding them stays well inside 5 seconds.
_BUILD_BYTES = 4_000_000


_USER_VERSIONS = 1 << 16  # a versionstamp's 2-byte user version


@dataclass
class _Attempt:
    """One try of one transaction, and what to finish once it commits."""

    tr: Transaction
    tenant_checked: bool = False
    stamped: list[tuple[Model, int]] = field(default_factory=list)

    def next_user_version(self, record: Model) -> int:
        number = len(self.stamped)
        if number >= _USER_VERSIONS:
            raise ValueTooLargeError(
                f"{type(record).__name__}: one transaction can insert at most {_USER_VERSIONS} "
                "records with versionstamp ids"
            )
        self.stamped.append((record, number))
        return number

    def complete(self, versionstamp: bytes) -> None:
        """Give records inserted with a versionstamp id their final id."""
        for record, user_version in self.stamped:
            name = record.__fdbsync__.primary_key
            setattr(record, name, Versionstamp(versionstamp, user_version))


class Repo:
    """Async CRUD and queries over models, for one tenant.

    `Repo(engine)` serves a single-tenant app directly. `Repo(engine, multi_tenant=True)` is
    the root of a multi-tenant app: `await repo.tenants.open("acme")` returns the repo bound
    to tenant "acme", which every data call needs. `models` limits the repo to those models.
    `on_open(tenant_repo)` runs whenever `tenants.open` opens a tenant.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        models: Iterable[type[Model]] | None = None,
        multi_tenant: bool = False,
        on_open: Callable[[Repo], Awaitable[None]] | None = None,
    ) -> None:
        from .tenants import Tenants

        self.engine = engine
        self.multi_tenant = multi_tenant
        #: Awaited with the tenant's repo by `tenants.open()`, before it is returned: how
        #: migrations bring a tenant up to date (see `Migrator.attach`).
        self.on_open = on_open
        self.models: tuple[type[Model], ...] | None = None if models is None else tuple(models)
        if self.models is not None:
            _check_sources(self.models)
        self._space: TenantSpace | None = (
            None if multi_tenant else TenantSpace("", engine.limits.key_size)
        )
        self._attempt: _Attempt | None = None
        self._record_keys: dict[type[Model], RecordKeys] = {}
        self._index_spaces: dict[tuple[type[Model], str], IndexSpace] = {}
        self.tenants = Tenants(self)

    # -- binding -------------------------------------------------------------------------

    @property
    def tenant(self) -> str | None:
        """The tenant this repo reads and writes ("" when single-tenant; None at the root)."""
        return None if self._space is None else self._space.tenant

    @property
    def keyspace(self) -> TenantSpace:
        """This tenant's keys; `keyspace.user(...)` makes keys for the application's own data."""
        return self._require_space()

    @property
    def transaction_handle(self) -> Transaction:
        """Raw key-value access inside `transaction()`, confined to this repo's tenant (build
        keys with `keyspace.user(...)`). The Repo commits and retries it."""
        if self._attempt is None:
            raise RuntimeError("raw key-value access needs a Repo.transaction()")
        space = self._require_space()
        return ScopedTransaction(self._attempt.tr, space.prefix, space.tenant)

    def _bind(self, space: TenantSpace | None = None, attempt: _Attempt | None = None) -> Repo:
        bound = object.__new__(Repo)
        bound.__dict__.update(self.__dict__)
        if space is not None:
            bound._space = space
            bound._record_keys = {}
            bound._index_spaces = {}
        bound._attempt = attempt
        return bound

    def _require_space(self) -> TenantSpace:
        if self._space is None:
            raise TenancyError(
                "this repo is multi-tenant: open a tenant first, "
                "for example `acme = await repo.tenants.open('acme')`"
            )
        return self._space

    def _check_model(self, model: Any) -> type[Model]:
        if not (isinstance(model, type) and issubclass(model, Model)):
            raise UnknownModelError(f"{model!r} is not a fdbsync Model class")
        if self.models is not None and model not in self.models:
            names = ", ".join(m.__name__ for m in self.models)
            raise UnknownModelError(f"{model.__name__} is not one of this repo's models ({names})")
        return model

    def _records(self, model: type[Model]) -> RecordKeys:
        keys = self._record_keys.get(model)
        if keys is None:
            space = self._require_space()
            keys = RecordKeys(
                space.record_prefix(model.__fdbsync__.source),
                model,
                space.tenant,
                self.engine.limits,
            )
            self._record_keys[model] = keys
        return keys

    def _index_space(self, model: type[Model], indexer: Indexer) -> IndexSpace:
        found = self._index_spaces.get((model, indexer.name))
        if found is None:
            found = self._require_space().index(
                indexer.section, model.__fdbsync__.source, indexer.name, model.__name__
            )
            self._index_spaces[(model, indexer.name)] = found
        return found

    def _primary_key(self, model: type[Model], value: Any) -> Any:
        """`value` as `model`'s primary key field holds it (a UUID given as a str, say)."""
        if isinstance(value, Versionstamp):
            return value
        return coerce_value(model, model.__fdbsync__.primary_key, value)

    def _claim(self, record: Model) -> type[Model]:
        model = self._check_model(type(record))
        owner = tenant_of(record)
        tenant = self._require_space().tenant
        if owner is not None and owner != tenant:
            raise TenancyError(
                f"{model.__name__} {primary_key_of(record)!r} belongs to tenant {owner!r}; "
                f"this repo is bound to tenant {tenant!r}"
            )
        return model

    # -- running -------------------------------------------------------------------------

    async def _run(self, op: Callable[[_Attempt], Awaitable[T]], *, writes: bool = False) -> T:
        """Run `op` in the bound transaction, or in a new one with the retry loop."""
        space = self._require_space()
        if self._attempt is not None:
            return await self._guarded(op, self._attempt, space, writes)
        return await self._retrying(lambda attempt: self._guarded(op, attempt, space, writes))

    async def _retrying(
        self,
        op: Callable[[_Attempt], Awaitable[T]],
        retry_limit: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (FDB's timeout option)
    ) -> T:
        """The engine's retry loop around `op`, finishing versionstamp ids after the commit."""

        async def once(tr: Transaction) -> tuple[_Attempt, T, asyncio.Future[bytes] | None]:
            attempt = _Attempt(tr)
            result = await op(attempt)
            # Asked for before the commit, as FDB requires; known after it.
            return attempt, result, _versionstamp(tr) if attempt.stamped else None

        attempt, result, stamp = await self.engine.transact(
            once, retry_limit=retry_limit, timeout=timeout
        )
        if stamp is not None:
            attempt.complete(await stamp)
        return result

    async def _guarded(
        self,
        op: Callable[[_Attempt], Awaitable[T]],
        attempt: _Attempt,
        space: TenantSpace,
        writes: bool,
    ) -> T:
        """Run `op`; a write in a named tenant also checks, in the same transaction and
        concurrently with `op`'s reads, that the tenant still exists."""
        if not (writes and self.multi_tenant and not attempt.tenant_checked):
            return await op(attempt)
        attempt.tenant_checked = True
        result, registered = await asyncio.gather(
            op(attempt), attempt.tr.get(tenant_registry_key(space.tenant)), return_exceptions=True
        )
        # A vanished tenant explains whatever else went wrong (a record not found, say).
        if isinstance(registered, BaseException):
            raise registered
        if registered is None:
            raise TenantNotFoundError(f"tenant {space.tenant!r} does not exist (any more)")
        if isinstance(result, BaseException):
            raise result
        done: T = result
        return done

    async def transaction(
        self,
        fn: Callable[[Repo], Awaitable[T]],
        *,
        retry_limit: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (FDB's timeout option)
    ) -> T:
        """Run `fn(tx)` in one transaction, retried on conflict; `tx` is this repo bound to it.

        Every Repo call on `tx` joins the transaction; `tx.transaction_handle` gives raw
        key-value access. `fn` may run more than once: keep side effects out of it.
        """
        if self._attempt is not None:
            return await fn(self)
        space = self._require_space()

        async def run(attempt: _Attempt) -> T:
            return await fn(self._bind(attempt=attempt))

        # Raw writes need the tenant check too: every transaction() makes it.
        return await self._retrying(
            lambda attempt: self._guarded(run, attempt, space, writes=True), retry_limit, timeout
        )

    # -- reads ---------------------------------------------------------------------------

    async def get(self, model: type[M], primary_key: Any) -> M | None:
        """The record with this primary key, or None."""
        keys = self._records(self._check_model(model))
        primary_key = self._primary_key(model, primary_key)

        async def op(attempt: _Attempt) -> M | None:
            stored = await keys.load(attempt.tr, primary_key)
            return None if stored is None else stored.record  # type: ignore[return-value]

        return await self._run(op)

    async def get_many(self, model: type[M], primary_keys: Sequence[Any]) -> list[M | None]:
        """The records with these primary keys (None where missing), read concurrently."""
        keys = self._records(self._check_model(model))
        wanted = [self._primary_key(model, pk) for pk in primary_keys]

        async def op(attempt: _Attempt) -> list[M | None]:
            found = await keys.load_many(attempt.tr, wanted)
            return [None if s is None else s.record for s in found]  # type: ignore[misc]

        return await self._run(op)

    async def get_by(self, model: type[M], by: Mapping[str, Any]) -> M | None:
        """The one record matching equalities `by` through an index, or None."""
        found = await self.all_by(model, by, limit=2)
        if len(found) > 1:
            raise QueryError(f"{model.__name__}: more than one record matches {dict(by)}")
        return found[0] if found else None

    async def all(
        self, source: type[M] | Query[M], *, limit: int | None = None, reverse: bool = False
    ) -> list[M]:
        """The records of a model in primary-key order, or the results of a query."""
        query = self._query(source, None, limit, reverse)
        return await self._run(lambda attempt: self._select(attempt, query))

    async def all_by(
        self,
        source: type[M] | Query[M],
        by: Mapping[str, Any],
        *,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[M]:
        """Records matching `by` (equalities, and at most one range on the next index field),
        in index order, through the index that answers them."""
        query = self._query(source, by, limit, reverse)
        return await self._run(lambda attempt: self._select(attempt, query))

    async def stream(self, source: type[M] | Query[M], *, page_size: int = 500) -> AsyncIterator[M]:
        """Every record of a model or query, read in pages of `page_size`, each page in a
        transaction of its own (inside `transaction()`, all in that one). Pages are not one
        snapshot: a record changed while streaming appears as it was when its page was read."""
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        query = self._query(source, None, None, False)
        remaining = query.limit
        cursor: bytes | None = None
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining)
            records, cursor = await self._run(
                functools.partial(self._page, query=query.take(size), cursor=cursor)
            )
            for record in records:
                yield record
            if remaining is not None:
                remaining -= len(records)
            if len(records) < size or cursor is None:
                return

    async def page(
        self,
        model: type[M],
        cursor: bytes | None = None,
        *,
        keys: int = 500,
        max_bytes: int | None = None,
    ) -> tuple[list[M], bytes | None]:
        """The whole records among the next `keys` keys of `model` in primary-key order, from
        `cursor` (None: the start), and the cursor to go on from (None at the end); with
        `max_bytes`, the page also ends once its records hold that many bytes (it has at least
        one). For batch jobs that keep their place between transactions, like data migrations."""
        source = self._check_model(model).__fdbsync__.source
        begin, end = self._require_space().records(source)
        records = self._records(model)

        async def op(attempt: _Attempt) -> tuple[list[M], bytes | None]:
            found, after = await records.scan_keys(
                attempt.tr, cursor or begin, end, keys, max_bytes=max_bytes
            )
            return found, after  # type: ignore[return-value]

        return await self._run(op)

    def _query(
        self,
        source: type[M] | Query[M],
        by: Mapping[str, Any] | None,
        limit: int | None,
        reverse: bool,
    ) -> Query[M]:
        if isinstance(source, Query):
            query = source
            self._check_model(query.model)
            if by:
                query = query.where(**by)
        else:
            query = Query(self._check_model(source), by or {})  # type: ignore[arg-type]
        if limit is not None:
            query = query.take(limit)
        if reverse:
            query = query.desc()
        return query

    async def _select(self, attempt: _Attempt, query: Query[M]) -> list[M]:
        records, _ = await self._page(attempt, query=query, cursor=None)
        return records

    async def _page(
        self, attempt: _Attempt, *, query: Query[M], cursor: bytes | None
    ) -> tuple[list[M], bytes | None]:
        """One page of a query's results, from `cursor` (exclusive) on."""
        tr = attempt.tr
        keys = self._records(query.model)
        if not query.conditions:
            begin, end = self._require_space().records(query.model.__fdbsync__.source)
            if cursor is not None:
                begin, end = (begin, cursor) if query.descending else (cursor, end)
            records, last = await keys.scan(
                tr, begin, end, limit=query.limit, reverse=query.descending
            )
            return records, last  # type: ignore[return-value]
        candidates = self._plan(query)
        if query.limit == 0:  # nothing to read; the query was still checked
            return [], None
        if len(candidates) > 1:  # use the first that is built (one more round trip)
            states = await gather_all(
                *(self._index_state(tr, query.model, c[0]) for c in candidates)
            )
            ready = [
                c for c, state in zip(candidates, states, strict=True) if _is_ready(state, c[0])
            ]
            candidates = ready[:1] or candidates[:1]
        indexer, space, (begin, end) = candidates[0]
        if cursor is not None:
            begin, end = (begin, cursor) if query.descending else (cursor + b"\x00", end)
        # The state is read with the entries, so checking it costs no extra round trip.
        state, entries = await gather_all(
            self._index_state(tr, query.model, indexer),
            tr.get_range(begin, end, limit=query.limit or 0, reverse=query.descending).to_list(),
        )
        if not _is_ready(state, indexer):
            raise IndexNotReadyError(
                f"{query.model.__name__} index {indexer.name!r} is declared but not built for "
                f"tenant {self._require_space().tenant!r}: run `await repo.build_indexes("
                f"{query.model.__name__})` (or `fdbsync upgrade`)"
            )
        prefix = len(space.prefix)
        found = await keys.load_many(tr, [unpack(kv.key, prefix)[-1] for kv in entries])
        last = entries[-1].key if entries else None
        return [s.record for s in found if s is not None], last  # type: ignore[misc]

    def _plan(self, query: Query[Any]) -> list[tuple[Indexer, IndexSpace, tuple[bytes, bytes]]]:
        """Every declared index that answers `query` (in declaration order), with its range."""
        model = query.model
        candidates = []
        for indexer in model.__fdbsync__.indexes:
            space = self._index_space(model, indexer)
            found = indexer.range(space, query)
            if found is not None:
                candidates.append((indexer, space, found))
        if candidates:
            return candidates
        equal = sorted(query.equalities)
        ranged = query.range
        fields = [*equal, *([ranged[0]] if ranged else [])]
        wanted = Index(*fields)
        shown = ", ".join(repr(f) for f in wanted.fields)
        raise MissingIndexError(
            f"{model.__name__} has no index for a query on {', '.join(fields)}"
            f"{' (range on ' + ranged[0] + ')' if ranged else ''}: declare Index({shown}) on "
            f"{model.__name__} (equality fields first, the range field last) and build it"
        )

    def _index_state(
        self, tr: Transaction, model: type[Model], indexer: Indexer
    ) -> Awaitable[bytes | None]:
        return tr.get(self._require_space().index_state(model.__fdbsync__.source, indexer.name))

    # -- writes --------------------------------------------------------------------------

    async def insert(self, record: M) -> M:
        """Store a new record; its primary key must not be stored yet (DuplicateKeyError)."""
        return await self._run(lambda attempt: self._put(attempt, record, "error"), writes=True)

    async def insert_all(self, records: Sequence[M]) -> list[M]:
        """Store several new records in one transaction: all of them or none."""
        prepared = [self._prepare(record) for record in records]

        async def op(attempt: _Attempt) -> list[M]:
            new = [self._stamp(attempt, record) for record in prepared]
            await self._check_absent(attempt, new)
            staged = self._staged(attempt)
            for record in new:
                await self._write(staged, self._records(type(record)), None, record)
            staged.apply()
            return new

        return await self._run(op, writes=True)

    async def upsert(
        self, record: M, *, on_conflict: Literal["replace", "nothing"] = "replace"
    ) -> M:
        """Insert `record`, or when its primary key is stored, replace the stored record
        (`on_conflict="replace"`) or keep it (`"nothing"`). Returns what is stored."""
        if on_conflict not in ("replace", "nothing"):
            raise ValueError("on_conflict is 'replace' or 'nothing'")
        return await self._run(lambda attempt: self._put(attempt, record, on_conflict), writes=True)

    async def update(self, record: M, changes: Mapping[str, Any] | None = None) -> M:
        """Apply `changes` (field -> value) to the stored record and store it, validated.

        Without `changes`, store `record`'s field values. A change to the primary key, or to a
        field the model lacks, is a FieldError; an update that changes nothing writes nothing.
        """
        model = self._claim(record)
        primary_key = primary_key_of(record)
        if changes is None:
            changes = _fields(record)
        unknown = [name for name in changes if name not in model.model_fields]
        if unknown:
            raise FieldError(f"{model.__name__} has no field(s) {', '.join(unknown)}")
        name = model.__fdbsync__.primary_key
        if name in changes and self._primary_key(model, changes[name]) != primary_key:
            raise FieldError(f"{model.__name__}.{name}: the primary key cannot change")
        keys = self._records(model)

        async def op(attempt: _Attempt) -> M:
            stored = await self._load_existing(attempt, keys, primary_key)
            new = model.model_validate({**_fields(stored.record), **changes, name: primary_key})
            new._fdbsync_tenant = keys.tenant
            staged = self._staged(attempt)
            await self._write(staged, keys, stored, new)
            staged.apply()
            return new  # type: ignore[return-value]

        return await self._run(op, writes=True)

    async def delete(self, record: Model) -> None:
        """Delete the stored record with `record`'s primary key (RecordNotFoundError if none)."""
        model = self._claim(record)
        await self.delete_by_key(model, primary_key_of(record))

    async def delete_by_key(self, model: type[Model], primary_key: Any) -> None:
        """Delete the stored record with this primary key (RecordNotFoundError if none)."""
        keys = self._records(self._check_model(model))
        primary_key = self._primary_key(model, primary_key)

        async def op(attempt: _Attempt) -> None:
            stored = await self._load_existing(attempt, keys, primary_key)
            staged = self._staged(attempt)
            keys.erase(staged, primary_key, was_split=stored.split)
            for indexer in model.__fdbsync__.indexes:
                indexer.clear(staged, self._index_space(model, indexer), stored.record)
            staged.apply()

        await self._run(op, writes=True)

    def _prepare(self, record: M) -> M:
        """A validated copy of `record` to store in this tenant (nothing is written yet)."""
        model = self._claim(record)
        fresh = model.model_validate(_fields(record))  # a model_construct()ed record, too
        fresh._fdbsync_tenant = self._require_space().tenant
        return fresh  # type: ignore[return-value]

    def _stamp(self, attempt: _Attempt, record: M) -> M:
        """`record`, with an incomplete versionstamp id numbered within this transaction."""
        primary_key = primary_key_of(record)
        if not (isinstance(primary_key, Versionstamp) and not primary_key.is_complete()):
            return record
        stamped = record.model_copy()
        number = attempt.next_user_version(stamped)
        setattr(stamped, record.__fdbsync__.primary_key, Versionstamp(user_version=number))
        return stamped

    async def _check_absent(self, attempt: _Attempt, records: Sequence[Model]) -> None:
        """DuplicateKeyError if two records share a primary key or one is stored already."""
        by_model: dict[type[Model], list[Any]] = {}
        for record in records:
            primary_key = primary_key_of(record)
            if not isinstance(primary_key, Versionstamp):
                by_model.setdefault(type(record), []).append(primary_key)
        for model, primary_keys in by_model.items():
            if len(set(primary_keys)) < len(primary_keys):
                twice = next(pk for pk in primary_keys if primary_keys.count(pk) > 1)
                raise DuplicateKeyError(f"{model.__name__} {twice!r} appears twice")
        found = await gather_all(
            *(self._records(m).load_many(attempt.tr, pks) for m, pks in by_model.items())
        )
        for (model, primary_keys), stored in zip(by_model.items(), found, strict=True):
            for primary_key, existing in zip(primary_keys, stored, strict=True):
                if existing is not None:
                    raise DuplicateKeyError(f"{model.__name__} {primary_key!r} is already stored")

    async def _put(
        self, attempt: _Attempt, record: M, on_conflict: Literal["error", "replace", "nothing"]
    ) -> M:
        new = self._stamp(attempt, self._prepare(record))
        keys = self._records(type(new))
        primary_key = primary_key_of(new)
        stored = None
        if not (isinstance(primary_key, Versionstamp) and not primary_key.is_complete()):
            stored = await keys.load(attempt.tr, primary_key)
        if stored is not None:
            if on_conflict == "error":
                raise DuplicateKeyError(f"{type(new).__name__} {primary_key!r} is already stored")
            if on_conflict == "nothing":
                return stored.record  # type: ignore[return-value]
        staged = self._staged(attempt)
        await self._write(staged, keys, stored, new)
        staged.apply()
        return new

    async def _load_existing(self, attempt: _Attempt, keys: RecordKeys, primary_key: Any) -> Stored:
        stored = await keys.load(attempt.tr, primary_key)
        if stored is None:
            raise RecordNotFoundError(f"{keys.model.__name__} {primary_key!r} is not stored")
        return stored

    def _staged(self, attempt: _Attempt) -> ScopedTransaction:
        """Writes held back until `apply()`, so a write that fails half-way leaves nothing."""
        space = self._require_space()
        return ScopedTransaction(attempt.tr, space.prefix, space.tenant, staged=True)

    async def _write(
        self, tr: Transaction, keys: RecordKeys, stored: Stored | None, new: Model
    ) -> bool:
        """Store `new` over `stored` (None: a new record) with its index entries and counters;
        False, writing nothing, when the stored body would not change."""
        body = await encode_record(new)
        if stored is not None and stored.body == body:
            return False
        model = keys.model
        keys.store(tr, new, body, was_split=stored is not None and stored.split)
        for indexer in model.__fdbsync__.indexes:
            space = self._index_space(model, indexer)
            if stored is None:
                indexer.set(tr, space, new)
            else:
                indexer.update(tr, space, stored.record, new)
        return True

    # -- watches and counters ------------------------------------------------------------

    def record_key(self, model: type[Model], primary_key: Any) -> bytes:
        """The key a record lives at (stored or not): the key to watch for its changes."""
        keys = self._records(self._check_model(model))
        return keys.key(self._primary_key(model, primary_key))

    def counter_key(
        self, model: type[Model], counter: str = "changes", by: Mapping[str, Any] | None = None
    ) -> bytes:
        """The key of one SchemaMetadata counter: the key to watch for a collection's changes."""
        if counter not in COUNTERS:
            raise ValueError(f"counter is one of {', '.join(COUNTERS)}, not {counter!r}")
        indexer, space, values = self._metadata(model, by)
        return indexer.counter_key(space, values, counter)

    async def watch(self, model: type[Model], primary_key: Any) -> Watch:
        """A watch on one record, stored or not yet: it fires when the record changes."""
        key = self.record_key(model, primary_key)

        async def op(attempt: _Attempt) -> Watch:
            return attempt.tr.watch(key)

        return await self._run(op)

    def _metadata(
        self, model: type[Model], by: Mapping[str, Any] | None
    ) -> tuple[SchemaMetadata, IndexSpace, tuple[Any, ...]]:
        model = self._check_model(model)
        query = Query(model, by or {})
        if query.range is not None:
            raise QueryError(f"{model.__name__}: counters are kept per value, not for a range")
        fields = set(by or ())
        for indexer in model.__fdbsync__.indexes:
            if isinstance(indexer, SchemaMetadata) and set(indexer.by) == fields:
                elements = indexer.values_of(model.model_construct(**query.equalities))
                return indexer, self._index_space(model, indexer), elements
        shown = f"by={tuple(sorted(fields))!r}" if fields else ""
        raise MissingIndexError(
            f"{model.__name__} declares no SchemaMetadata({shown}): add it to its indexes"
        )

    async def counters(self, model: type[Model], by: Mapping[str, Any] | None = None) -> Counters:
        """SchemaMetadata's counters for `model`, or for one value of its `by` fields."""
        indexer, space, values = self._metadata(model, by)

        async def op(attempt: _Attempt) -> Counters:
            found = await gather_all(
                *(attempt.tr.get(indexer.counter_key(space, values, c)) for c in COUNTERS)
            )
            counts = [0 if v is None else int.from_bytes(v, "little", signed=True) for v in found]
            return Counters(*counts)

        return await self._run(op)

    async def watch_counter(
        self,
        model: type[Model],
        counter: str = "changes",
        by: Mapping[str, Any] | None = None,
    ) -> Watch:
        """A watch on one SchemaMetadata counter (inserts, deletes, collection, updates,
        changes), for the model or one value of its `by` fields."""
        key = self.counter_key(model, counter, by)

        async def op(attempt: _Attempt) -> Watch:
            return attempt.tr.watch(key)

        return await self._run(op)

    # -- index builds --------------------------------------------------------------------

    async def index_states(self, model: type[Model]) -> dict[str, str | None]:
        """Each declared index's build state in this tenant: "ready", "building", or None when
        it was never built (or was built with another definition under the same name)."""
        model = self._check_model(model)

        async def op(attempt: _Attempt) -> dict[str, str | None]:
            indexers = model.__fdbsync__.indexes
            found = await gather_all(*(self._index_state(attempt.tr, model, i) for i in indexers))
            return {
                indexer.name: _state_of(value, indexer)
                for indexer, value in zip(indexers, found, strict=True)
            }

        return await self._run(op)

    async def build_indexes(
        self,
        model: type[Model],
        names: str | Iterable[str] | None = None,
        *,
        batch_size: int = 1000,
        claim_timeout: float = 30.0,
        wait: float = 60.0,
        progress: Callable[[str, int], None] | None = None,
    ) -> list[str]:
        """Build `model`'s declared indexes (or those named) that are not ready in this tenant;
        return the names this call built.

        A build runs online, as a series of transactions over at most `batch_size` keys each
        (a split record is never cut), with its cursor stored in the index's state, so a build
        that dies resumes where it stopped. One builder at a time holds a claim that each batch
        renews; a claim not renewed for `claim_timeout` seconds is taken over. A call that finds
        another builder at work waits for it (at most `wait` seconds, else IndexNotReadyError).
        Writers keep every declared index current while it builds, so the builder only adds the
        entries of records stored before the index was declared; the result is exact. An index
        declared anew under an old name loses the old entries first. `progress(name, records)`
        is called after each batch.
        """
        model = self._check_model(model)
        declared = {indexer.name: indexer for indexer in model.__fdbsync__.indexes}
        wanted = (
            set(declared) if names is None else {names} if isinstance(names, str) else set(names)
        )
        unknown = wanted - set(declared)
        if unknown:
            raise MissingIndexError(f"{model.__name__} declares no index named {sorted(unknown)}")
        built: list[str] = []
        for name, indexer in declared.items():
            if name in wanted:
                build = _Build(self, model, indexer, batch_size, claim_timeout, progress)
                if await build.run(wait):
                    built.append(name)
        return built


def _versionstamp(tr: Transaction) -> asyncio.Future[bytes]:
    """The commit's versionstamp, whose failure (the commit's) is no one's concern if the
    commit's own error is handled."""
    stamp = asyncio.ensure_future(tr.get_versionstamp())
    stamp.add_done_callback(lambda done: done.cancelled() or done.exception())
    return stamp


def _state_of(stored: bytes | None, indexer: Indexer) -> str | None:
    """The build state stored for `indexer`; None if none, or if it describes another index."""
    if stored is None:
        return None
    found = json.loads(stored)
    state = found.pop("state", None)
    for bookkeeping in _BUILD_FIELDS:
        found.pop(bookkeeping, None)
    return state if found == indexer.describe() else None


def _is_ready(stored: bytes | None, indexer: Indexer) -> bool:
    return _state_of(stored, indexer) == READY


def _fields(record: Model) -> dict[str, Any]:
    return {name: getattr(record, name) for name in type(record).model_fields}


def _check_sources(models: Sequence[type[Model]]) -> None:
    seen: dict[str, type[Model]] = {}
    for model in models:
        if not (isinstance(model, type) and issubclass(model, Model)):
            raise ModelDefinitionError(f"{model!r} is not a fdbsync Model class")
        other = seen.setdefault(model.__fdbsync__.source, model)
        if other is not model:
            raise ModelDefinitionError(
                f"{model.__name__} and {other.__name__} share the source "
                f"{model.__fdbsync__.source!r}"
            )


class _Claimed(Exception):
    """Another builder holds the claim (until `expires`)."""


class _Build:
    """One index's online build in one tenant: claim, batches with a stored cursor, ready."""

    def __init__(
        self,
        repo: Repo,
        model: type[Model],
        indexer: Indexer,
        batch_size: int,
        claim_timeout: float,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        if batch_size <= 0 or claim_timeout <= 0:
            raise ValueError("batch_size and claim_timeout must be positive")
        self.repo, self.model, self.indexer = repo, model, indexer
        self.batch_size, self.claim_timeout, self.progress = batch_size, claim_timeout, progress
        space = repo._require_space()
        self.key = space.index_state(model.__fdbsync__.source, indexer.name)
        self.records = space.records(model.__fdbsync__.source)
        self.owner = uuid.uuid4().hex

    async def run(self, wait: float) -> bool:
        """Build to the end; False if it was ready already (or another builder finished it)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                state = await self.repo._run(self._claim, writes=True)
            except _Claimed:
                if time.monotonic() >= deadline:
                    raise IndexNotReadyError(
                        f"{self.model.__name__} index {self.indexer.name!r} is being built by "
                        f"another process in tenant {self.repo.tenant!r}; gave up waiting "
                        f"after {wait} s"
                    ) from None
                await asyncio.sleep(min(0.05, self.claim_timeout / 10))
                continue
            if state is None:
                return False
            outcome = await self._batches(state)
            if outcome != "lost":
                return outcome == READY

    def _stored(self, value: dict[str, Any]) -> bytes:
        return json.dumps({**self.indexer.describe(), **value}).encode()

    async def _claim(self, attempt: _Attempt) -> dict[str, Any] | None:
        """Take (or renew) the claim; None if the index is ready. Raises _Claimed."""
        tr = attempt.tr
        stored = await tr.get(self.key)
        now = time.time()
        state = None if stored is None else json.loads(stored)
        current = _state_of(stored, self.indexer)
        if current == READY:
            return None
        if state is not None and current is None:  # another definition under this name
            tr.clear_range(*self.repo._index_space(self.model, self.indexer).range())
            state = None
        if state is None:
            visit = self.indexer.create_range(self.records)
            cursor = None if visit is None else visit[0].hex()
            state = {"state": BUILDING, "cursor": cursor, "done": 0}
        elif state.get("owner") not in (None, self.owner) and state.get("expires", 0) > now:
            raise _Claimed()
        state.update(owner=self.owner, expires=now + self.claim_timeout)
        tr.set(self.key, self._stored(state))
        return state

    async def _batches(self, state: dict[str, Any]) -> str:
        """Run batches until the index is ready ("ready"), the claim is lost ("lost") or the
        index is dropped under the build ("dropped")."""
        keys = self.repo._records(self.model)
        space = self.repo._index_space(self.model, self.indexer)
        end = self.records[1]

        async def batch(attempt: _Attempt) -> dict[str, Any] | None:
            tr = attempt.tr
            stored: dict[str, Any] = json.loads(await tr.get(self.key) or b"{}")
            if not stored:
                return {"state": _DROPPED}  # dropped meanwhile (a downgrade): do not bring it back
            if stored.get("owner") != self.owner:
                return None  # taken over: our claim expired
            count = 0
            if stored["cursor"] is not None:
                begin = bytes.fromhex(stored["cursor"])
                found, cursor = await keys.scan_keys(
                    tr, begin, end, self.batch_size, max_bytes=_BUILD_BYTES
                )
                for record in found:
                    self.indexer.set(tr, space, record)
                count = len(found)
                stored["cursor"] = None if cursor is None else cursor.hex()
            stored["done"] = stored.get("done", 0) + count
            if stored["cursor"] is None:
                stored = {"state": READY, "done": stored["done"]}
            else:
                stored["expires"] = time.time() + self.claim_timeout
            tr.set(self.key, self._stored(stored))
            return stored

        while True:
            stored = await self.repo._run(batch, writes=True)
            if stored is None:
                return "lost"
            if stored["state"] == _DROPPED:
                return _DROPPED
            if self.progress is not None:
                self.progress(self.indexer.name, stored.get("done", 0))
            if stored["state"] == READY:
                return READY
