"""The dump file format: a keyspace's key-value pairs, checked end to end.

    FDBSYNC-DUMP 1 {"ranges": [["<hex>", "<hex>"], ...], "tenant": ..., "created": ..., ...}\\n
    0x01 | key length (u32 BE) | value length (u32 BE) | key | value      one per pair
    ...
    0x00 | record count (u64 BE) | SHA-256 of every byte before this 0x00 (32 bytes)

The header is one line of JSON after the magic and the format version; `ranges` are the
[begin, end) key ranges copied (hex), and every key lies in one of them, in ascending order.
A reader checks the structure, the order, the count and the checksum, so a truncated or
corrupted file is refused as a whole (before anything is written anywhere).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import CliError

__all__ = ["FORMAT_VERSION", "MAGIC", "DumpError", "DumpReader", "DumpWriter", "Header"]

MAGIC = b"FDBSYNC-DUMP"
FORMAT_VERSION = 1
_RECORD, _END = b"\x01", b"\x00"
_LENGTHS = struct.Struct(">II")
_TRAILER = struct.Struct(">Q32s")
_MAX_HEADER = 1 << 20


class DumpError(CliError):
    """A file that is not a complete, intact fdbsync dump."""


@dataclass(frozen=True)
class Header:
    """What a dump holds: the key ranges it copied, and where from."""

    ranges: tuple[tuple[bytes, bytes], ...]
    tenant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> bytes:
        body = {
            "ranges": [[begin.hex(), end.hex()] for begin, end in self.ranges],
            "tenant": self.tenant,
            **self.extra,
        }
        return MAGIC + b" %d " % FORMAT_VERSION + json.dumps(body).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes, path: Path) -> Header:
        parts = line.rstrip(b"\n").split(b" ", 2)
        if len(parts) != 3 or parts[0] != MAGIC:
            raise DumpError(f"{path} is not an fdbsync dump")
        if parts[1] != b"%d" % FORMAT_VERSION:
            version = parts[1].decode(errors="replace")
            raise DumpError(
                f"{path}: dump format {version!r}; this fdbsync reads format {FORMAT_VERSION}"
            )
        try:
            body = json.loads(parts[2])
            ranges = tuple((bytes.fromhex(b), bytes.fromhex(e)) for b, e in body.pop("ranges"))
            tenant = body.pop("tenant")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DumpError(f"{path} is corrupted: its header is not valid") from None
        return cls(ranges, tenant, body)

    def covers(self, key: bytes) -> bool:
        return any(begin <= key < end for begin, end in self.ranges)


class DumpWriter:
    """Writes a dump to an open binary stream: `write` each pair in key order, then `finish`."""

    def __init__(self, stream: IO[bytes], header: Header) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.count = 0
        self._emit(header.line())

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self._stream.write(data)

    def write(self, key: bytes, value: bytes) -> None:
        self._emit(_RECORD + _LENGTHS.pack(len(key), len(value)) + key + value)
        self.count += 1

    def finish(self) -> None:
        self._stream.write(_END + _TRAILER.pack(self.count, self._hash.digest()))


class DumpReader:
    """Reads a dump file. `header` is read at once; iterating yields every (key, value) and
    raises DumpError at the first problem (so iterate once to verify a file before using
    it). Keys and values over `key_limit` / `value_limit` bytes are refused too."""

    def __init__(self, path: Path, *, key_limit: int, value_limit: int) -> None:
        self.path = path
        self.key_limit, self.value_limit = key_limit, value_limit
        with path.open("rb") as stream:
            self.header = Header.parse(self._header_line(stream), path)
        #: The number of records, known once an iteration has reached the end.
        self.count: int | None = None

    def _header_line(self, stream: IO[bytes]) -> bytes:
        line = stream.readline(_MAX_HEADER)
        if not line.endswith(b"\n"):
            if line.startswith(MAGIC):
                raise DumpError(f"{self.path} is truncated: its header is incomplete")
            raise DumpError(f"{self.path} is not an fdbsync dump")
        return line

    def _exactly(self, stream: IO[bytes], size: int, count: int) -> bytes:
        data = stream.read(size)
        if len(data) != size:
            raise DumpError(
                f"{self.path} is truncated after {count:,} records: the dump did not finish"
            )
        return data

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        digest = hashlib.sha256()
        count = 0
        previous: bytes | None = None
        with self.path.open("rb") as stream:
            digest.update(self._header_line(stream))
            while True:
                offset = stream.tell()
                tag = self._exactly(stream, 1, count)
                if tag == _END:
                    break
                if tag != _RECORD:
                    raise DumpError(f"{self.path} is corrupted at byte {offset:,}")
                head = self._exactly(stream, _LENGTHS.size, count)
                key_size, value_size = _LENGTHS.unpack(head)
                if key_size > self.key_limit or value_size > self.value_limit:
                    raise DumpError(
                        f"{self.path}: record {count + 1:,} at byte {offset:,} has a "
                        f"{key_size:,}-byte key and a {value_size:,}-byte value, over the "
                        f"engine's limits ({self.key_limit:,} and {self.value_limit:,}): "
                        "the file is corrupted or from an engine with larger limits"
                    )
                body = self._exactly(stream, key_size + value_size, count)
                key, value = body[:key_size], body[key_size:]
                if (previous is not None and key <= previous) or not self.header.covers(key):
                    raise DumpError(
                        f"{self.path} is corrupted at byte {offset:,}: a key out of order "
                        "or outside the dumped ranges"
                    )
                digest.update(tag + head + body)
                previous = key
                count += 1
                yield key, value
            stored_count, stored_digest = _TRAILER.unpack(
                self._exactly(stream, _TRAILER.size, count)
            )
            if stream.read(1):
                raise DumpError(f"{self.path} is corrupted: data after the end of the dump")
        if stored_count != count or stored_digest != digest.digest():
            raise DumpError(f"{self.path} is corrupted: its checksum does not match")
        self.count = count

    def verify(self) -> int:
        """Read the whole file; its record count (DumpError if anything is wrong)."""
        for _ in self:
            pass
        assert self.count is not None
        return self.count
