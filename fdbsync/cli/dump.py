"""`fdbsync dump` and `load`: copy keys between an engine and a dump file (see dumpfile.py),
in transactions of at most 1,000 keys or 1 MB, so any size fits FoundationDB's limits.

A dump is not one snapshot: each batch is read as it is when read, so stop writers first for
an exact copy. A load verifies the whole file before it writes anything, and refuses a target
that already holds keys in the dumped ranges unless told to replace them.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from ..data.keyspace import TenantSpace, tenant_registry_key
from ..data.tenants import check_name
from ..engine.base import Engine, KeyValue, Transaction
from ..engine.keys import key_after
from .dumpfile import DumpReader, DumpWriter, Header
from .errors import CliError
from .progress import Progress

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_KEYS", "dump", "load", "open_dump", "tenant_ranges"]

MAX_BATCH_KEYS = 1_000
MAX_BATCH_BYTES = 1_000_000
EVERYTHING = (b"", b"\xff")


def _registry_range(tenant: str) -> tuple[bytes, bytes]:
    registry = tenant_registry_key(check_name(tenant))
    return registry, key_after(registry)


def tenant_ranges(engine: Engine, tenant: str) -> tuple[tuple[bytes, bytes], ...]:
    """A tenant's keys: its registry key and the range of its tuple prefix, in key order."""
    space = TenantSpace(tenant, engine.limits.key_size)
    return tuple(sorted([_registry_range(tenant), space.range()]))


async def _batch(engine: Engine, begin: bytes, end: bytes) -> list[KeyValue]:
    """The pairs from `begin`, up to MAX_BATCH_KEYS or about MAX_BATCH_BYTES."""

    async def read(tr: Transaction) -> list[KeyValue]:
        rows: list[KeyValue] = []
        size = 0
        async for row in tr.get_range(begin, end, limit=MAX_BATCH_KEYS):
            rows.append(row)
            size += len(row.key) + len(row.value)
            if size >= MAX_BATCH_BYTES:
                break
        return rows

    return await engine.transact(read)


async def dump(engine: Engine, path: Path, progress: Progress, tenant: str | None = None) -> int:
    """Write the keys of `tenant` (None: every key) to `path`; the number of pairs written.
    The file appears only once complete (written beside it, then renamed)."""
    if tenant is None:
        ranges: tuple[tuple[bytes, bytes], ...] = (EVERYTHING,)
    else:
        ranges = tenant_ranges(engine, tenant)
        if not await _any_key(engine, [_registry_range(tenant)]):
            raise CliError(f"tenant {tenant!r} does not exist")
    created = dt.datetime.now(dt.UTC).isoformat()
    header = Header(ranges, tenant, {"created": created, "source": engine.url})
    partial = path.with_name(path.name + ".partial")
    label = f"dump {tenant}" if tenant is not None else "dump"
    progress.start(label, unit="keys")
    try:
        with partial.open("wb") as stream:
            writer = DumpWriter(stream, header)
            for begin, end in ranges:
                while True:
                    rows = await _batch(engine, begin, end)
                    for row in rows:
                        writer.write(row.key, row.value)
                    progress.update(label, writer.count)
                    if not rows:
                        break
                    begin = key_after(rows[-1].key)
            writer.finish()
            stream.flush()
            os.fsync(stream.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
        progress.finish(label)
    return writer.count


async def _any_key(engine: Engine, ranges: list[tuple[bytes, bytes]]) -> bool:
    async def probe(tr: Transaction) -> bool:
        for begin, end in ranges:
            if await tr.get_range(begin, end, limit=1).to_list():
                return True
        return False

    return await engine.transact(probe)


def _describe(header: Header) -> str:
    return "everything" if header.tenant is None else f"tenant {header.tenant!r}"


def open_dump(engine: Engine, path: Path) -> tuple[DumpReader, int]:
    """The dump at `path`, read through and checked against `engine`'s limits (an unopened
    engine will do), and its record count: DumpError if it is truncated or corrupted."""
    if not path.is_file():
        raise CliError(f"no dump file at {path}")
    reader = DumpReader(
        path, key_limit=engine.limits.key_size, value_limit=engine.limits.value_size
    )
    return reader, reader.verify()


async def load(
    engine: Engine, reader: DumpReader, progress: Progress, *, replace: bool = False
) -> int:
    """Write the pairs of a verified dump (`open_dump`) into `engine`; the number written.
    With `replace`, the dumped ranges are cleared first; without it, a target holding keys in
    them is refused."""
    header = reader.header
    ranges = list(header.ranges)
    if replace:

        async def clear(tr: Transaction) -> None:
            for begin, end in ranges:
                tr.clear_range(begin, end)

        await engine.transact(clear)
    elif await _any_key(engine, ranges):
        raise CliError(
            f"{engine.url} already holds keys where {reader.path} goes ({_describe(header)}): "
            "load into an empty database, or pass --replace to clear them first"
        )
    label = "load" if header.tenant is None else f"load {header.tenant}"
    progress.start(label, total=reader.count, unit="keys")
    written = 0
    batch: list[tuple[bytes, bytes]] = []
    size = 0

    async def write(tr: Transaction) -> None:
        for key, value in batch:
            tr.set(key, value)

    try:
        for key, value in reader:
            batch.append((key, value))
            size += len(key) + len(value)
            if len(batch) >= MAX_BATCH_KEYS or size >= MAX_BATCH_BYTES:
                await engine.transact(write)
                written += len(batch)
                progress.update(label, written)
                batch, size = [], 0
        if batch:
            await engine.transact(write)
            written += len(batch)
            progress.update(label, written)
    finally:
        progress.finish(label)
    return written
