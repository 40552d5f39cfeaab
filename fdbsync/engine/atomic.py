"""The semantics of FoundationDB's atomic mutations, for engines that apply them themselves."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum


class AtomicOp(Enum):
    ADD = "add"
    BIT_AND = "bit_and"
    BIT_OR = "bit_or"
    BIT_XOR = "bit_xor"
    MAX = "max"
    MIN = "min"
    BYTE_MAX = "byte_max"
    BYTE_MIN = "byte_min"
    APPEND_IF_FITS = "append_if_fits"
    COMPARE_AND_CLEAR = "compare_and_clear"


def _fit(existing: bytes, length: int) -> bytes:
    """Zero-extend or truncate `existing` to `length` bytes, as FDB does for numeric ops."""
    return existing[:length].ljust(length, b"\x00")


def _little(value: bytes) -> int:
    return int.from_bytes(value, "little")


def _add(existing: bytes | None, param: bytes) -> bytes | None:
    total = _little(_fit(existing or b"", len(param))) + _little(param)
    return (total % (1 << (8 * len(param)))).to_bytes(len(param), "little") if param else b""


def _bitwise(fn: Callable[[int, int], int], missing_is_param: bool) -> Callable[..., bytes | None]:
    def apply(existing: bytes | None, param: bytes) -> bytes | None:
        if existing is None and missing_is_param:
            return param
        left = _fit(existing or b"", len(param))
        return bytes(fn(a, b) for a, b in zip(left, param, strict=True))

    return apply


def _max(existing: bytes | None, param: bytes) -> bytes | None:
    left = _fit(existing or b"", len(param))
    return left if _little(left) > _little(param) else param


def _min(existing: bytes | None, param: bytes) -> bytes | None:
    if existing is None:
        return param
    left = _fit(existing, len(param))
    return left if _little(left) < _little(param) else param


def _byte_max(existing: bytes | None, param: bytes) -> bytes | None:
    return param if existing is None else max(existing, param)


def _byte_min(existing: bytes | None, param: bytes) -> bytes | None:
    return param if existing is None else min(existing, param)


def _compare_and_clear(existing: bytes | None, param: bytes) -> bytes | None:
    return None if existing == param else existing


def _append_if_fits(limit: int) -> Callable[[bytes | None, bytes], bytes | None]:
    def apply(existing: bytes | None, param: bytes) -> bytes | None:
        base = existing or b""
        return base + param if len(base) + len(param) <= limit else base

    return apply


_OPS: dict[AtomicOp, Callable[[bytes | None, bytes], bytes | None]] = {
    AtomicOp.ADD: _add,
    # Since API 510 an AND or MIN on a missing key stores the operand (and_v2, min_v2).
    AtomicOp.BIT_AND: _bitwise(lambda a, b: a & b, missing_is_param=True),
    AtomicOp.BIT_OR: _bitwise(lambda a, b: a | b, missing_is_param=False),
    AtomicOp.BIT_XOR: _bitwise(lambda a, b: a ^ b, missing_is_param=False),
    AtomicOp.MAX: _max,
    AtomicOp.MIN: _min,
    AtomicOp.BYTE_MAX: _byte_max,
    AtomicOp.BYTE_MIN: _byte_min,
    AtomicOp.COMPARE_AND_CLEAR: _compare_and_clear,
}


def apply_atomic(
    op: AtomicOp, existing: bytes | None, param: bytes, value_limit: int = 100_000
) -> bytes | None:
    """The value a key holds after `op(param)` is applied to `existing` (None means absent)."""
    if op is AtomicOp.APPEND_IF_FITS:
        return _append_if_fits(value_limit)(existing, param)
    return _OPS[op](existing, param)
