"""Reading and writing records at their keys, split over several keys when large."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..engine.base import ReadView, Transaction
from ..engine.keys import pack, unpack
from . import codec
from .concurrent import gather_all
from .errors import ValueTooLargeError
from .keyspace import write
from .model import Model

__all__ = ["RecordKeys", "Stored"]

M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as read, with what a later write needs to know about its stored form."""

    record: Model
    split: bool


class RecordKeys:
    """The record keys of one model in one tenant."""

    def __init__(self, prefix: bytes, model: type[Model], tenant: str, value_limit: int) -> None:
        self.prefix = prefix
        self.model = model
        self.tenant = tenant
        self.value_limit = value_limit

    def key(self, primary_key: Any) -> bytes:
        return pack((primary_key,), self.prefix)

    def parts_range(self, key: bytes) -> tuple[bytes, bytes]:
        return key + b"\x00", key + b"\xff"

    def _what(self, primary_key: Any) -> str:
        return f"{self.model.__name__} {primary_key!r}"

    def _decode(self, primary_key: Any, body: bytes) -> Model:
        record = codec.decode(self.model, primary_key, body)
        record._fdbsync_tenant = self.tenant
        return record

    async def load(self, tr: ReadView, primary_key: Any) -> Stored | None:
        return (await self.load_many(tr, [primary_key]))[0]

    async def load_many(self, tr: ReadView, primary_keys: Sequence[Any]) -> list[Stored | None]:
        """Several records, in one read of their keys (and one more per split record)."""
        keys = [self.key(pk) for pk in primary_keys]
        if len(keys) == 1:  # the commonest case, and a plain get is the cheaper call
            found = [await tr.get(keys[0])]
        else:
            found = await tr.get_many(keys)
        loaded: list[Stored | None] = []
        split: list[tuple[int, codec.SplitHeader]] = []
        for primary_key, value in zip(primary_keys, found, strict=True):
            header = None if value is None else codec.read_header(value)
            if value is None:
                loaded.append(None)
            elif header is None:
                loaded.append(Stored(self._decode(primary_key, value), split=False))
            else:
                split.append((len(loaded), header))
                loaded.append(None)
        if split:
            parts = await gather_all(
                *(tr.get_range(*self.parts_range(keys[i])).to_list() for i, _ in split)
            )
            for (i, header), rows in zip(split, parts, strict=True):
                body = codec.join_parts(
                    header, [kv.value for kv in rows], self._what(primary_keys[i])
                )
                loaded[i] = Stored(self._decode(primary_keys[i], body), split=True)
        return loaded

    def store(
        self,
        tr: Transaction,
        record: Model,
        body: bytes,
        *,
        was_split: bool,
        max_size: int | None,
    ) -> None:
        primary_key = getattr(record, self.model.__fdbsync__.primary_key)
        if max_size is not None and len(body) > max_size:
            raise ValueTooLargeError(
                f"{self._what(primary_key)}: the record encodes to {len(body)} bytes, over "
                f"{self.model.__name__}'s max_value_size of {max_size}"
            )
        if was_split:
            tr.clear_range(*self.parts_range(self.key(primary_key)))
        if len(body) <= self.value_limit:
            write(tr, self.prefix, (primary_key,), body)
            return
        header, parts = codec.split(body, self.value_limit)
        write(tr, self.prefix, (primary_key,), header)
        for number, part in enumerate(parts):
            write(tr, self.prefix, (primary_key, number), part)

    def erase(self, tr: Transaction, primary_key: Any, *, was_split: bool) -> None:
        key = self.key(primary_key)
        tr.clear(key)
        if was_split:
            tr.clear_range(*self.parts_range(key))

    async def scan(
        self, tr: ReadView, begin: bytes, end: bytes, *, limit: int | None, reverse: bool
    ) -> tuple[list[Model], bytes | None]:
        """Up to `limit` records with keys in [begin, end), and the key to continue from.

        The continuation key is the last record's key going backwards, and the end of its
        parts going forwards, so a next scan starts exactly after it.
        """
        records: list[Model] = []
        parts: list[bytes] = []
        # Forwards, a split record's header comes before its parts; backwards, after them.
        pending: tuple[Any, codec.SplitHeader] | None = None
        last: bytes | None = None

        def full() -> bool:
            return limit is not None and len(records) >= limit

        if full():
            return records, None
        async for key, value in tr.get_range(begin, end, reverse=reverse):
            element = unpack(key, len(self.prefix))
            if len(element) == 2:
                parts.append(value)
                continue
            if pending is not None:
                records.append(self._join(pending, parts, reverse))
                pending = None
                if full():
                    break
            primary_key = element[0]
            last = key if reverse else self.parts_range(key)[1]
            header = codec.read_header(value)
            if header is None:
                records.append(self._decode(primary_key, value))
            elif reverse:
                records.append(self._join((primary_key, header), parts, reverse))
            else:
                pending = (primary_key, header)
            if full():
                break
        if pending is not None:
            records.append(self._join(pending, parts, reverse))
        return records, last

    def _join(
        self, pending: tuple[Any, codec.SplitHeader], parts: list[bytes], reverse: bool
    ) -> Model:
        primary_key, header = pending
        if reverse:
            parts.reverse()
        body = codec.join_parts(header, parts, self._what(primary_key))
        parts.clear()
        return self._decode(primary_key, body)
