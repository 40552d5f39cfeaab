"""Reading and writing records at their keys, split over several keys when large."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.base import ReadView, Transaction
from ..engine.keys import Versionstamp, pack, unpack
from ..engine.limits import Limits
from . import codec
from .concurrent import gather_all
from .errors import QueryError, ValueTooLargeError
from .keyspace import write
from .model import Model

__all__ = ["RecordKeys", "Stored"]

#: Bodies larger than this are encoded, decoded and checked off the event loop.
OFF_LOOP_BYTES = 64 * 1024
#: A compressed body this large may decompress to more than OFF_LOOP_BYTES.
OFF_LOOP_COMPRESSED_BYTES = 8 * 1024
#: Room a split record's part key takes, and room left for index entries and conflict ranges.
_PART_KEY_ROOM = 200
_ROOM = 64 * 1024


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as read, with its stored body (to tell whether a write changes anything) and
    whether it is split (so a write clears its parts)."""

    record: Model
    body: bytes
    split: bool


class RecordKeys:
    """The record keys of one model in one tenant."""

    def __init__(self, prefix: bytes, model: type[Model], tenant: str, limits: Limits) -> None:
        self.prefix = prefix
        self.model = model
        self.tenant = tenant
        self.limits = limits

    def key(self, primary_key: Any) -> bytes:
        if isinstance(primary_key, Versionstamp) and not primary_key.is_complete():
            raise QueryError(
                f"{self.model.__name__}: this record's versionstamp id is assigned when its "
                "transaction commits; use it after the commit"
            )
        key = pack((primary_key,), self.prefix)
        if len(key) > self.limits.key_size:
            raise ValueTooLargeError(
                f"{self.model.__name__}: a primary key of {len(key)} bytes as a key is over "
                f"the {self.limits.key_size}-byte key limit"
            )
        return key

    def parts_range(self, key: bytes) -> tuple[bytes, bytes]:
        return key + b"\x00", key + b"\xff"

    def _what(self, primary_key: Any) -> str:
        return f"{self.model.__name__} {primary_key!r}"

    # -- reading ---------------------------------------------------------------------------

    async def load(self, tr: ReadView, primary_key: Any) -> Stored | None:
        return (await self.load_many(tr, [primary_key]))[0]

    async def load_many(self, tr: ReadView, primary_keys: Sequence[Any]) -> list[Stored | None]:
        """Several records, in one read of their keys (and one more per split record)."""
        keys = [self.key(pk) for pk in primary_keys]
        if len(keys) == 1:  # the commonest case, and a plain get is the cheaper call
            found = [await tr.get(keys[0])]
        else:
            found = await tr.get_many(keys)
        headers = [None if value is None else codec.read_header(value) for value in found]
        split = [i for i, header in enumerate(headers) if header is not None]
        parts = await gather_all(
            *(tr.get_range(*self.parts_range(keys[i])).to_list() for i in split)
        )
        bodies: list[bytes | None] = list(found)
        for i, rows in zip(split, parts, strict=True):
            bodies[i] = await self._join(primary_keys[i], headers[i], [kv.value for kv in rows])
        return [
            None if body is None else await self._stored(pk, body, headers[i] is not None)
            for i, (pk, body) in enumerate(zip(primary_keys, bodies, strict=True))
        ]

    async def scan(
        self, tr: ReadView, begin: bytes, end: bytes, *, limit: int | None, reverse: bool
    ) -> tuple[list[Model], bytes | None]:
        """Up to `limit` records with keys in [begin, end), and the key to continue from.

        With a limit, rows are read in pages of about the records still wanted, so the read
        (and its conflict range) stops near the last record returned. The continuation key is
        the last record's key going backwards, and the end of its parts going forwards.
        """
        records: list[Model] = []
        last: bytes | None = None
        parts: list[bytes] = []
        # Forwards, a split record's header comes before its parts; backwards, after them.
        pending: tuple[Any, codec.SplitHeader] | None = None
        if limit == 0:
            return records, last
        while True:
            want = 0 if limit is None else limit - len(records) + (1 if pending else 0)
            rows = await tr.get_range(begin, end, limit=want, reverse=reverse).to_list()
            for key, value in rows:
                element = unpack(key, len(self.prefix))
                if len(element) == 2:
                    parts.append(value)
                    continue
                if pending is not None:
                    records.append(await self._finish(pending, parts, reverse))
                    pending = None
                    if limit is not None and len(records) >= limit:
                        return records, last
                primary_key = element[0]
                header = codec.read_header(value)
                last = key if reverse else self.parts_range(key)[1]
                if header is None:
                    records.append((await self._stored(primary_key, value, False)).record)
                elif reverse:
                    records.append(await self._finish((primary_key, header), parts, reverse))
                else:
                    pending = (primary_key, header)
                if limit is not None and len(records) >= limit:
                    return records, last
            if not rows or (limit is None or len(rows) < want):
                break  # the range is exhausted
            begin, end = (begin, rows[-1].key) if reverse else (rows[-1].key + b"\x00", end)
        if pending is not None:
            records.append(await self._finish(pending, parts, reverse))
        return records, last

    async def scan_keys(
        self,
        tr: ReadView,
        begin: bytes,
        end: bytes,
        budget: int,
        *,
        max_bytes: int | None = None,
    ) -> tuple[list[Model], bytes | None]:
        """The whole records among the next `budget` keys from `begin` (stopping once they
        hold `max_bytes`, after at least one), and the key to go on from (None once
        [begin, end) is done). A split record is never cut: one that the budget would cut is
        left for the next call, or read whole when it comes first."""
        rows = await tr.get_range(begin, end, limit=budget).to_list()
        done = len(rows) < budget
        if max_bytes is not None:
            size = 0
            for count, (key, value) in enumerate(rows):
                size += len(key) + len(value)
                if size > max_bytes and count > 0:
                    rows, done = rows[:count], False
                    break
        groups: list[tuple[bytes, Any, bytes, list[bytes]]] = []  # key, pk, value, parts
        for key, value in rows:
            element = unpack(key, len(self.prefix))
            if len(element) == 2:
                groups[-1][3].append(value)
            else:
                groups.append((key, element[0], value, []))
        if groups and not done:
            key, _, value, parts = groups[-1]
            header = codec.read_header(value)
            if header is not None and len(parts) < header.parts:
                if len(groups) > 1:
                    groups.pop()  # the next call starts at its header
                else:
                    rest = tr.get_range(rows[-1].key + b"\x00", self.parts_range(key)[1])
                    parts.extend(kv.value for kv in await rest.to_list())
        records = []
        for _, primary_key, value, parts in groups:
            header = codec.read_header(value)
            if header is None:
                records.append((await self._stored(primary_key, value, False)).record)
            else:
                records.append(await self._finish((primary_key, header), parts, False))
        if done or not groups:
            return records, None
        return records, self.parts_range(groups[-1][0])[1]

    async def _finish(
        self, pending: tuple[Any, codec.SplitHeader], parts: list[bytes], reverse: bool
    ) -> Model:
        primary_key, header = pending
        ordered = parts[::-1] if reverse else list(parts)
        parts.clear()
        body = await self._join(primary_key, header, ordered)
        return (await self._stored(primary_key, body, True)).record

    async def _join(
        self, primary_key: Any, header: codec.SplitHeader | None, parts: list[bytes]
    ) -> bytes:
        assert header is not None
        what = self._what(primary_key)
        if header.length > OFF_LOOP_BYTES:
            return await asyncio.to_thread(codec.join_parts, header, parts, what)
        return codec.join_parts(header, parts, what)

    async def _stored(self, primary_key: Any, body: bytes, split: bool) -> Stored:
        compressed = body[:1] == bytes([codec.ZJSON])
        if len(body) > (OFF_LOOP_COMPRESSED_BYTES if compressed else OFF_LOOP_BYTES):
            record = await asyncio.to_thread(codec.decode, self.model, primary_key, body)
        else:
            record = codec.decode(self.model, primary_key, body)
        record._fdbsync_tenant = self.tenant
        return Stored(record, body, split)

    # -- writing ---------------------------------------------------------------------------

    def store(self, tr: Transaction, record: Model, body: bytes, *, was_split: bool) -> None:
        """Write `record`'s body (split when over the value limit) at its key."""
        primary_key = getattr(record, self.model.__fdbsync__.primary_key)
        max_size = self.model.__fdbsync__.max_value_size
        if max_size is not None and len(body) > max_size:
            raise ValueTooLargeError(
                f"{self._what(primary_key)}: the record encodes to {len(body)} bytes, over "
                f"{self.model.__name__}'s max_value_size of {max_size}"
            )
        part_count = len(body) // self.limits.value_size + 1
        if len(body) + part_count * _PART_KEY_ROOM > self.limits.transaction_size - _ROOM:
            raise ValueTooLargeError(
                f"{self._what(primary_key)}: the record encodes to {len(body)} bytes; with its "
                f"keys it would not fit in one transaction ({self.limits.transaction_size} bytes)"
            )
        if not (isinstance(primary_key, Versionstamp) and not primary_key.is_complete()):
            key = self.key(primary_key)  # checks the key's size
            if was_split:
                tr.clear_range(*self.parts_range(key))
        if len(body) <= self.limits.value_size:
            write(tr, self.prefix, (primary_key,), body)
            return
        header, parts = codec.split(body, self.limits.value_size)
        write(tr, self.prefix, (primary_key,), header)
        for number, part in enumerate(parts):
            write(tr, self.prefix, (primary_key, number), part)

    def erase(self, tr: Transaction, primary_key: Any, *, was_split: bool) -> None:
        key = self.key(primary_key)
        tr.clear(key)
        if was_split:
            tr.clear_range(*self.parts_range(key))


async def encode_record(record: Model) -> bytes:
    """The record's body; a record that looks large is encoded off the event loop."""
    rough = sum(len(value) for value in record.__dict__.values() if isinstance(value, str | bytes))
    if rough > OFF_LOOP_BYTES:
        return await asyncio.to_thread(codec.encode, record)
    return codec.encode(record)
