"""Record values: a versioned JSON encoding, compressed when that pays, split when too large.

Byte 0 of a stored value says how to read the rest:

- 0x01: the record as JSON (Pydantic's JSON mode, without the primary key, which is in the key);
- 0x02: the same JSON, zlib-compressed;
- 0x03: a split record's header: the format of the joined body, its length, the number of parts,
  and a BLAKE2b digest of the body. The parts are stored at the record key extended by the part
  number. The digest makes the header change whenever the record does, so a watch on the record
  key fires for split records too, and it detects parts that do not belong together.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from .errors import CorruptRecordError
from .model import Model, field_adapter

__all__ = ["SplitHeader", "decode", "encode", "join_parts", "read_header", "split"]

JSON = 0x01
ZJSON = 0x02
SPLIT = 0x03

_COMPRESS_ABOVE = 2048
_HEADER = struct.Struct(">BBIH16s")  # SPLIT, body format, body length, parts, digest


def encode(record: Model) -> bytes:
    """The record's stored body (format byte + payload), without its primary key."""
    payload = record.model_dump_json(exclude={record.__fdbsync__.primary_key}).encode()
    if len(payload) > _COMPRESS_ABOVE:
        packed = zlib.compress(payload, 1)
        if len(packed) < len(payload):
            return bytes([ZJSON]) + packed
    return bytes([JSON]) + payload


def decode(model: type[Model], primary_key: Any, body: bytes) -> Model:
    """The record stored as `body` under `primary_key`."""
    kind, payload = body[0], body[1:]
    if kind == ZJSON:
        payload = zlib.decompress(payload)
    elif kind != JSON:
        raise CorruptRecordError(f"{model.__name__} {primary_key!r}: unknown format {kind}")
    name = model.__fdbsync__.primary_key
    key_json = field_adapter(model, name).dump_json(primary_key)
    rest = payload[1:]
    joined = b'{"' + name.encode() + b'":' + key_json + (b"," + rest if rest != b"}" else rest)
    return model.model_validate_json(joined)


@dataclass(frozen=True, slots=True)
class SplitHeader:
    body_format: int
    length: int
    parts: int
    digest: bytes


def split(body: bytes, part_size: int) -> tuple[bytes, list[bytes]]:
    """The header and parts of a body too large for one value."""
    parts = [body[i : i + part_size] for i in range(0, len(body), part_size)]
    digest = hashlib.blake2b(body, digest_size=16).digest()
    header = _HEADER.pack(SPLIT, body[0], len(body), len(parts), digest)
    return header, parts


def read_header(value: bytes) -> SplitHeader | None:
    """The split header in `value`, or None when `value` holds the whole record."""
    if value[0] != SPLIT:
        return None
    _, body_format, length, parts, digest = _HEADER.unpack(value)
    return SplitHeader(body_format, length, parts, digest)


def join_parts(header: SplitHeader, parts: list[bytes], what: str) -> bytes:
    """The body the parts make, checked against the header."""
    body = b"".join(parts)
    if (
        len(parts) != header.parts
        or len(body) != header.length
        or hashlib.blake2b(body, digest_size=16).digest() != header.digest
    ):
        raise CorruptRecordError(f"{what}: its parts do not match its header's checksum")
    return body
