"""A transaction confined to one tenant's keys, optionally holding its writes back.

`Repo.transaction()` hands applications a `ScopedTransaction` for raw key-value access: every
key it reads, writes, watches or names in a conflict range must start with the tenant's
prefix, so a transaction for tenant A cannot touch tenant B. Key selectors resolve inside the
tenant (a selector that would leave it stops at its edge).

With `staged=True` the writes are recorded and applied only by `apply()`. The Repo stages the
writes of one record and its index entries that way, so a record whose index entry cannot be
computed (a NaN, a key over the limit) leaves nothing half-written in the transaction.
Reads pass straight through and do not see staged writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from ..engine.atomic import AtomicOp
from ..engine.base import KeyValue, RangeResult, ReadView, Transaction, Watch
from ..engine.keys import strinc
from ..engine.selectors import KeyOrSelector, KeySelector
from .errors import TenancyError

__all__ = ["ScopedReads", "ScopedTransaction"]

_Mutation = Callable[[Transaction], None]


class ScopedReads(ReadView):
    """Reads of one tenant's keys."""

    def __init__(self, inner: ReadView, prefix: bytes, tenant: str) -> None:
        self._inner = inner
        self._begin = prefix
        self._end = strinc(prefix)
        self._tenant = tenant

    def _check(self, key: bytes) -> bytes:
        if not (isinstance(key, bytes) and key.startswith(self._begin)):
            raise TenancyError(
                f"key {key[:40]!r} is outside tenant {self._tenant!r}: build keys with "
                "repo.keyspace.user(...)"
            )
        return key

    def _check_range(self, begin: bytes, end: bytes) -> None:
        if not (self._begin <= begin and end <= self._end):
            raise TenancyError(
                f"range {begin[:40]!r}..{end[:40]!r} is outside tenant {self._tenant!r}"
            )

    def _clamp(self, key: bytes) -> bytes:
        return min(max(key, self._begin), self._end)

    async def get(self, key: bytes) -> bytes | None:
        return await self._inner.get(self._check(key))

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return await self._inner.get_many([self._check(key) for key in keys])

    async def get_key(self, selector: KeySelector) -> bytes:
        self._check_range(selector.key, selector.key)
        return self._clamp(await self._inner.get_key(selector))

    def get_range(
        self, begin: KeyOrSelector, end: KeyOrSelector, *, limit: int = 0, reverse: bool = False
    ) -> RangeResult:
        if isinstance(begin, KeySelector) or isinstance(end, KeySelector):
            return _SelectedRange(self, begin, end, limit, reverse)
        self._check_range(begin, end)
        return self._inner.get_range(begin, end, limit=limit, reverse=reverse)

    async def get_read_version(self) -> int:
        return await self._inner.get_read_version()


class _SelectedRange(RangeResult):
    """A range whose selector bounds are first resolved inside the tenant."""

    def __init__(
        self,
        reads: ScopedReads,
        begin: KeyOrSelector,
        end: KeyOrSelector,
        limit: int,
        reverse: bool,
    ) -> None:
        self._reads, self._bounds = reads, (begin, end)
        self._limit, self._reverse = limit, reverse

    async def __aiter__(self) -> AsyncIterator[KeyValue]:
        begin, end = [
            await self._reads.get_key(b) if isinstance(b, KeySelector) else b for b in self._bounds
        ]
        async for row in self._reads.get_range(
            begin, max(begin, end), limit=self._limit, reverse=self._reverse
        ):
            yield row


class ScopedTransaction(ScopedReads, Transaction):
    """A transaction of one tenant's keys; the Repo owns its commit and retries."""

    _inner: Transaction

    def __init__(
        self, inner: Transaction, prefix: bytes, tenant: str, *, staged: bool = False
    ) -> None:
        super().__init__(inner, prefix, tenant)
        self._snapshot = ScopedReads(inner.snapshot, prefix, tenant)
        self._staged: list[_Mutation] | None = [] if staged else None

    def _mutate(self, mutation: _Mutation) -> None:
        if self._staged is None:
            mutation(self._inner)
        else:
            self._staged.append(mutation)

    def apply(self) -> None:
        """Apply the staged writes to the transaction, in order."""
        staged, self._staged = self._staged or [], []
        for mutation in staged:
            mutation(self._inner)

    @property
    def snapshot(self) -> ReadView:
        return self._snapshot

    # -- writes ----------------------------------------------------------------------------
    def set(self, key: bytes, value: bytes) -> None:
        self._check(key)
        self._mutate(lambda tr: tr.set(key, value))

    def clear(self, key: bytes) -> None:
        self._check(key)
        self._mutate(lambda tr: tr.clear(key))

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._check_range(begin, end)
        self._mutate(lambda tr: tr.clear_range(begin, end))

    def atomic(self, op: AtomicOp, key: bytes, param: bytes) -> None:
        self._check(key)
        self._mutate(lambda tr: tr.atomic(op, key, param))

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        # The placeholder comes after the tenant prefix, so checking the bytes before the
        # 4-byte offset is enough: whatever stamp fills it, the key stays in the tenant.
        self._check(key[:-4])
        self._mutate(lambda tr: tr.set_versionstamped_key(key, value))

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._check(key)
        self._mutate(lambda tr: tr.set_versionstamped_value(key, value))

    # -- conflict ranges and watches -------------------------------------------------------
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_range(begin, end)
        self._inner.add_read_conflict_range(begin, end)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_range(begin, end)
        self._inner.add_write_conflict_range(begin, end)

    def watch(self, key: bytes) -> Watch:
        return self._inner.watch(self._check(key))

    def get_versionstamp(self) -> Awaitable[bytes]:
        return self._inner.get_versionstamp()

    def get_committed_version(self) -> int:
        return self._inner.get_committed_version()

    # -- the Repo's, not the application's -------------------------------------------------
    def _owned(self) -> RuntimeError:
        return RuntimeError("the Repo commits, retries and ends this transaction")

    async def commit(self) -> None:
        raise self._owned()

    async def on_error(self, error: BaseException) -> None:
        raise self._owned()

    def reset(self) -> None:
        raise self._owned()

    def cancel(self) -> None:
        raise self._owned()

    def set_timeout(self, seconds: float | None) -> None:
        raise self._owned()

    def set_retry_limit(self, retries: int | None) -> None:
        raise self._owned()
