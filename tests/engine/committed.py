"""Helpers for engine tests: commit rows, read what is committed, expect an FDB error."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import pytest

from fdbsync.engine import Engine, FDBError, Transaction


async def store(
    engine: Engine, rows: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]
) -> None:
    """Commit `rows` in one transaction."""
    items = list(rows.items()) if isinstance(rows, Mapping) else list(rows)

    async def write(tr: Transaction) -> None:
        for key, value in items:
            tr.set(key, value)

    await engine.transact(write)


async def read(engine: Engine, key: bytes) -> bytes | None:
    """The committed value of `key`, read in a fresh transaction."""

    async def get(tr: Transaction) -> bytes | None:
        return await tr.get(key)

    return await engine.transact(get)


async def read_range(engine: Engine, begin: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
    """The committed rows in [begin, end), read in a fresh transaction."""

    async def scan(tr: Transaction) -> list[tuple[bytes, bytes]]:
        return [(kv.key, kv.value) for kv in await tr.get_range(begin, end).to_list()]

    return await engine.transact(scan)


async def expect_error(code: int, awaitable: Awaitable[Any]) -> FDBError:
    """Await `awaitable` and return the FDBError it must raise, checking its code."""
    with pytest.raises(FDBError) as caught:
        await awaitable
    assert caught.value.code == code, caught.value
    return caught.value


def pending_watches(engine: Engine) -> int:
    """The engine's pending storage watches (skips on engines that do not report them)."""
    count = getattr(engine, "pending_watches", None)
    if count is None:
        pytest.skip(f"{type(engine).__name__} does not report pending watches")
    assert isinstance(count, int)
    return count
