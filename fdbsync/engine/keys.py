"""Key encoding: FoundationDB's tuple layer and the byte-key helpers every layer uses.

Keys are tuple-encoded with the official `fdb.tuple`, which is pure Python, so both engines
share one byte-identical keyspace and byte order equals tuple order.
"""

from __future__ import annotations

import types
from typing import Any

import fdb
import fdb.tuple as _fdb_tuple

# fdb.tuple looks up fdb.impl.Value when it packs a Versionstamp; fdb.impl only exists once
# the client library is loaded. Until then, a stand-in type that nothing is an instance of
# lets versionstamps pack on every engine. Loading the real library replaces it.
if not hasattr(fdb, "impl"):
    fdb.impl = types.SimpleNamespace(Value=type("_NoClientValue", (), {}))

Versionstamp = _fdb_tuple.Versionstamp

__all__ = [
    "Versionstamp",
    "has_incomplete_versionstamp",
    "key_after",
    "pack",
    "pack_with_versionstamp",
    "prefix_range",
    "strinc",
    "tuple_range",
    "unpack",
]


def pack(items: tuple[Any, ...], prefix: bytes = b"") -> bytes:
    """Encode a tuple as an order-preserving key."""
    result: bytes = _fdb_tuple.pack(items, prefix=prefix)
    return result


def unpack(key: bytes, prefix_len: int = 0) -> tuple[Any, ...]:
    """Decode a key made by `pack` (skipping `prefix_len` leading bytes)."""
    result: tuple[Any, ...] = _fdb_tuple.unpack(key, prefix_len=prefix_len)
    return result


def pack_with_versionstamp(items: tuple[Any, ...], prefix: bytes = b"") -> bytes:
    """Encode a tuple holding one incomplete Versionstamp, for set_versionstamped_key/value."""
    result: bytes = _fdb_tuple.pack_with_versionstamp(items, prefix=prefix)
    return result


def has_incomplete_versionstamp(items: tuple[Any, ...]) -> bool:
    result: bool = _fdb_tuple.has_incomplete_versionstamp(items)
    return result


def strinc(key: bytes) -> bytes:
    """The first key after every key that starts with `key` (FDB's strinc)."""
    stripped = key.rstrip(b"\xff")
    if not stripped:
        raise ValueError("a key made only of 0xff bytes has no successor prefix")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def key_after(key: bytes) -> bytes:
    """The smallest key greater than `key`."""
    return key + b"\x00"


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """The [begin, end) range of every key that starts with `prefix`."""
    return prefix, strinc(prefix)


def tuple_range(items: tuple[Any, ...], prefix: bytes = b"") -> tuple[bytes, bytes]:
    """The [begin, end) range of every key of a tuple that extends `items` (FDB's tuple range)."""
    packed = pack(items, prefix)
    return packed + b"\x00", packed + b"\xff"
