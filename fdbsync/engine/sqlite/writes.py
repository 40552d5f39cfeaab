"""A transaction's buffered writes and the read-your-writes view they give its own reads."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import Enum

from ..atomic import AtomicOp, apply_atomic
from ..errors import ErrorCode, FDBError


class Op(Enum):
    """Mutation kinds sent to the committer, in the order the transaction issued them."""

    SET = "set"
    CLEAR = "clear"
    CLEAR_RANGE = "clear_range"
    VERSIONSTAMPED_KEY = "versionstamped_key"
    VERSIONSTAMPED_VALUE = "versionstamped_value"
    ATOMIC = "atomic"


@dataclass(frozen=True, slots=True)
class Mutation:
    op: Op
    key: bytes
    #: The value, the end of a cleared range, or an atomic operand.
    param: bytes = b""
    atomic: AtomicOp | None = None


class Unreadable:
    """Marks a key whose value only the commit will know (a versionstamped value)."""


UNREADABLE = Unreadable()


@dataclass(slots=True)
class Pending:
    """Atomic operations on a key whose stored value this transaction has not read."""

    ops: list[tuple[AtomicOp, bytes]] = field(default_factory=list)

    def apply(self, base: bytes | None, value_limit: int) -> bytes | None:
        for op, param in self.ops:
            base = apply_atomic(op, base, param, value_limit)
        return base


Local = bytes | None | Pending | Unreadable
_FROM_STORE = object()


class WriteBuffer:
    """Mutations in issue order plus, per key, what this transaction alone determines."""

    def __init__(self, value_limit: int) -> None:
        self.mutations: list[Mutation] = []
        self.size = 0
        self._value_limit = value_limit
        self._local: dict[bytes, Local] = {}
        self._sorted: list[bytes] = []
        self._cleared: list[tuple[bytes, bytes]] = []  # sorted, disjoint [begin, end) ranges
        # Where versionstamped keys may land: unknown until commit, so unreadable (FDB's 1036).
        self._unreadable: list[tuple[bytes, bytes]] = []

    def __bool__(self) -> bool:
        return bool(self.mutations)

    # -- recording -------------------------------------------------------------------------
    def record(self, mutation: Mutation) -> None:
        self.mutations.append(mutation)
        op = mutation.op
        # FDB counts each mutation and, again, the write conflict range it implies.
        if op is Op.CLEAR_RANGE:
            self.size += 2 * (len(mutation.key) + len(mutation.param))
        else:
            self.size += 2 * len(mutation.key) + 1 + len(mutation.param)
        if op is Op.SET:
            self._put(mutation.key, mutation.param)
        elif op is Op.CLEAR:
            self._put(mutation.key, None)
        elif op is Op.CLEAR_RANGE:
            self._clear_range(mutation.key, mutation.param)
        elif op is Op.VERSIONSTAMPED_VALUE:
            self._put(mutation.key, UNREADABLE)
        elif op is Op.ATOMIC:
            assert mutation.atomic is not None
            self._atomic(mutation.key, mutation.atomic, mutation.param)
        elif op is Op.VERSIONSTAMPED_KEY:
            # The key lands somewhere between the placeholder filled with 0x00s and with 0xffs.
            offset = int.from_bytes(mutation.key[-4:], "little")
            body = mutation.key[:-4]
            low = body[:offset] + b"\x00" * 10 + body[offset + 10 :]
            high = body[:offset] + b"\xff" * 10 + body[offset + 10 :]
            self._unreadable.append((low, high + b"\x00"))

    def _put(self, key: bytes, value: Local) -> None:
        if key not in self._local:
            bisect.insort(self._sorted, key)
        self._local[key] = value

    def _atomic(self, key: bytes, op: AtomicOp, param: bytes) -> None:
        current = self.lookup(key)
        if current is _FROM_STORE:
            self._put(key, Pending([(op, param)]))
        elif isinstance(current, Pending):
            current.ops.append((op, param))
        elif isinstance(current, Unreadable):
            pass  # still unknown until commit
        else:
            assert current is None or isinstance(current, bytes)
            self._put(key, apply_atomic(op, current, param, self._value_limit))

    def _clear_range(self, begin: bytes, end: bytes) -> None:
        lo = bisect.bisect_left(self._sorted, begin)
        hi = bisect.bisect_left(self._sorted, end)
        for key in self._sorted[lo:hi]:
            del self._local[key]
        del self._sorted[lo:hi]
        merged: list[tuple[bytes, bytes]] = []
        for b, e in self._cleared:
            if e < begin or b > end:
                merged.append((b, e))
            else:
                begin, end = min(b, begin), max(e, end)
        merged.append((begin, end))
        merged.sort()
        self._cleared = merged

    # -- the read-your-writes view ---------------------------------------------------------
    def lookup(self, key: bytes) -> Local | object:
        """What this transaction determines for `key`, or `_FROM_STORE` if the store decides."""
        if key in self._local:
            return self._local[key]
        if any(begin <= key < end for begin, end in self._unreadable):
            return UNREADABLE
        if self.is_cleared(key):
            return None
        return _FROM_STORE

    def cleared_whole(self, begin: bytes, end: bytes) -> bool:
        """Whether one range this transaction cleared covers all of [begin, end)."""
        return any(low <= begin and end <= high for low, high in self._cleared)

    def clears_within(self, begin: bytes, end: bytes) -> bool:
        """Whether a range this transaction cleared overlaps [begin, end)."""
        return any(low < end and begin < high for low, high in self._cleared)

    def is_cleared(self, key: bytes) -> bool:
        # The ranges are disjoint, so only the last one starting at or before `key` can hold it.
        index = bisect.bisect_right(self._cleared, key, key=lambda r: r[0]) - 1
        return index >= 0 and key < self._cleared[index][1]

    def check_readable(self, begin: bytes, end: bytes) -> None:
        """Fail with 1036 if [begin, end) may hold a versionstamped key written here."""
        for low, high in self._unreadable:
            if low < end and begin < high:
                raise FDBError(ErrorCode.ACCESSED_UNREADABLE, f"range {begin!r}..{end!r}")

    def keys_in(self, begin: bytes, end: bytes) -> list[bytes]:
        """The keys this transaction determines inside [begin, end), in order."""
        lo = bisect.bisect_left(self._sorted, begin)
        hi = bisect.bisect_left(self._sorted, end)
        return self._sorted[lo:hi]

    def resolve(self, key: bytes, stored: bytes | None) -> bytes | None:
        """The value this transaction reads at `key`, given the stored value."""
        local = self.lookup(key)
        if local is _FROM_STORE:
            return stored
        if isinstance(local, Pending):
            return local.apply(stored, self._value_limit)
        if isinstance(local, Unreadable):
            raise FDBError(ErrorCode.ACCESSED_UNREADABLE, f"key {key!r}")
        assert local is None or isinstance(local, bytes)
        return local

    def needs_store(self, key: bytes) -> bool:
        """Whether reading `key` needs the stored value."""
        local = self.lookup(key)
        return local is _FROM_STORE or isinstance(local, Pending)


FROM_STORE = _FROM_STORE
