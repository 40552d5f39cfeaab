"""The argument checks every engine makes at the call, with FoundationDB's error codes, so a bad
key or value fails the same way (and as early) on every engine."""

from __future__ import annotations

from .errors import ErrorCode, FDBError
from .limits import Limits
from .selectors import KeySelector

__all__ = [
    "SYSTEM_PREFIX",
    "check_key",
    "check_range",
    "check_readable_key",
    "check_selector",
    "check_value",
]

#: Keys from here on are FoundationDB's system keys: applications cannot write them.
SYSTEM_PREFIX = b"\xff"


def check_key(limits: Limits, key: bytes, *, writing: bool) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"keys are bytes, not {type(key).__name__}")
    if len(key) > limits.key_size:
        raise FDBError(ErrorCode.KEY_TOO_LARGE, f"{len(key)} bytes, limit {limits.key_size}")
    if writing and key.startswith(SYSTEM_PREFIX):
        raise FDBError(ErrorCode.KEY_OUTSIDE_LEGAL_RANGE, f"{key[:40]!r} is a system key")


def check_readable_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"keys are bytes, not {type(key).__name__}")
    if key >= SYSTEM_PREFIX:
        raise FDBError(ErrorCode.KEY_OUTSIDE_LEGAL_RANGE, f"{key[:40]!r} is a system key")


def check_value(limits: Limits, value: bytes) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"values are bytes, not {type(value).__name__}")
    if len(value) > limits.value_size:
        raise FDBError(ErrorCode.VALUE_TOO_LARGE, f"{len(value)} bytes, limit {limits.value_size}")


def check_range(begin: bytes, end: bytes) -> None:
    if not isinstance(begin, bytes) or not isinstance(end, bytes):
        raise TypeError("range bounds are bytes")
    if begin > end:
        raise FDBError(ErrorCode.INVERTED_RANGE, f"{begin!r} > {end!r}")
    if end > SYSTEM_PREFIX:
        raise FDBError(ErrorCode.KEY_OUTSIDE_LEGAL_RANGE, f"range end {end[:40]!r}")


def check_selector(selector: KeySelector) -> None:
    if selector.key > SYSTEM_PREFIX:
        detail = f"{selector.key[:40]!r} is past the user keyspace"
        raise FDBError(ErrorCode.KEY_OUTSIDE_LEGAL_RANGE, detail)
