"""Generated primary keys: sortable unique ids, and versionstamps assigned at commit."""

from __future__ import annotations

import os
import threading
import time
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from ..engine.keys import Versionstamp

__all__ = ["VersionstampId", "new_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def new_id() -> str:
    """A 26-character id that sorts by creation time (ULID layout: 48-bit ms, 80 random bits).

    Ids made in the same millisecond by this process increase, so a process's ids are strictly
    ordered; across processes they are ordered to the millisecond and unique by randomness.
    """
    global _last_ms, _last_random
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            now, rand = _last_ms, _last_random + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increase
        _last_ms, _last_random = now, rand
    number = (now << 80) | rand
    return "".join(_ALPHABET[(number >> shift) & 31] for shift in range(125, -1, -5))


def _to_versionstamp(value: Any) -> Any:
    if isinstance(value, Versionstamp):
        return value
    if isinstance(value, str):
        value = bytes.fromhex(value)
    if isinstance(value, bytes | bytearray) and len(value) == 12:
        return Versionstamp.from_bytes(bytes(value))
    raise ValueError("a versionstamp id is a Versionstamp, 12 bytes, or 24 hex digits")


def _to_hex(value: Versionstamp) -> str:
    if not value.is_complete():
        raise ValueError("this versionstamp id is assigned when its transaction commits")
    return bytes(value.to_bytes()).hex()


VersionstampId = Annotated[
    Versionstamp,
    BeforeValidator(_to_versionstamp),
    PlainSerializer(_to_hex, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-f]{24}$"}),
]
"""A primary key the commit assigns.

Declare it as `id: VersionstampId = Field(default_factory=Versionstamp)`.

Until the insert commits the id is incomplete; the record `insert` returns carries the final
one. Serialised as 24 hex digits (10-byte commit versionstamp + 2-byte user version).
"""
