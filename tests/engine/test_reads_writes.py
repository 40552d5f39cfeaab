"""Reads and writes in one process: point and range reads, key selectors, paging,
read-your-writes, snapshot reads, atomic operations, versionstamps and FoundationDB's limits."""

from __future__ import annotations

import asyncio
import bisect
import random
from typing import Any

import pytest

from fdbsync.engine import (
    Engine,
    FDBError,
    KeySelector,
    Limits,
    Transaction,
    Versionstamp,
    pack,
    pack_with_versionstamp,
    unpack,
)

from .committed import expect_error, read, read_range, store

# -- helpers -----------------------------------------------------------------------------------


def row_key(index: int) -> bytes:
    return b"row/%06d" % index


def row_value(index: int) -> bytes:
    return b"value-%d" % index


def le64(number: int) -> bytes:
    return number.to_bytes(8, "little")


def reference_resolve(keys: list[bytes], selector: KeySelector) -> bytes:
    """FDB's selector resolution over sorted `keys`: from the last key < key (<= with or_equal),
    move `offset` keys; before the first key is b"", past the last is b"\\xff"."""
    if selector.or_equal:
        base = bisect.bisect_right(keys, selector.key) - 1
    else:
        base = bisect.bisect_left(keys, selector.key) - 1
    index = base + selector.offset
    if index < 0:
        return b""
    if index >= len(keys):
        return b"\xff"
    return keys[index]


# -- point reads and writes --------------------------------------------------------------------


async def test_set_get_clear(engine: Engine) -> None:
    """A committed set is read back; a committed clear removes it; missing keys read None."""
    assert await read(engine, b"k") is None
    await store(engine, {b"k": b"v1", b"other": b"x"})
    assert await read(engine, b"k") == b"v1"
    await store(engine, {b"k": b"v2"})
    assert await read(engine, b"k") == b"v2"

    async def clear(tr: Transaction) -> None:
        tr.clear(b"k")

    await engine.transact(clear)
    assert await read(engine, b"k") is None
    assert await read(engine, b"other") == b"x"


async def test_get_many_answers_like_gets(engine: Engine) -> None:
    """In order, repeated keys included, through the transaction's own writes, at its read
    version, and in one piece for a thousand keys."""
    await store(engine, {b"a": b"1", b"b": b"2", b"c": b"3", b"n": le64(5)})
    tr = engine.create_transaction()
    tr.set(b"b", b"mine")
    tr.clear(b"c")
    tr.add(b"n", le64(2))
    tr.set(b"new", b"x")
    await store(engine, {b"a": b"later"})  # before tr's first read: tr sees it
    keys = [b"a", b"b", b"c", b"missing", b"n", b"new", b"a", b"k" * 20_000]
    expected = [await tr.get(key) for key in keys[:-1]] + [None]
    assert await tr.get_many(keys) == expected
    assert expected[1:6] == [b"mine", None, None, le64(7), b"x"]
    await store(engine, {b"a": b"changed again"})
    assert await tr.get_many([b"a"]) == [expected[0]]  # still the read version's value
    assert await tr.snapshot.get_many([b"b", b"a"]) == [b"mine", expected[0]]
    many = [row_key(i) for i in range(1200)]
    await store(engine, {key: row_value(i) for i, key in enumerate(many) if i % 3 == 0})
    fresh = engine.create_transaction()
    values = await fresh.get_many(many)
    assert values == [row_value(i) if i % 3 == 0 else None for i in range(len(many))]
    assert await engine.create_transaction().get_many([]) == []


async def test_get_many_refuses_system_keys(engine: Engine) -> None:
    await expect_error(2004, engine.create_transaction().get_many([b"a", b"\xff/x"]))


async def test_empty_key_and_empty_value(engine: Engine) -> None:
    """The empty key is a legal key and an empty value is a present value, not a missing one."""
    await store(engine, {b"": b"root", b"empty": b""})
    assert await read(engine, b"") == b"root"
    assert await read(engine, b"empty") == b""
    assert await read_range(engine, b"", b"\xff") == [(b"", b"root"), (b"empty", b"")]


async def test_clear_range_removes_begin_but_not_end(engine: Engine) -> None:
    """clear_range(b, e) clears b and everything before e, and keeps e."""
    await store(engine, {k: k for k in (b"a", b"b", b"c", b"d", b"e")})

    async def clear(tr: Transaction) -> None:
        tr.clear_range(b"b", b"d")

    await engine.transact(clear)
    assert [k for k, _ in await read_range(engine, b"", b"\xff")] == [b"a", b"d", b"e"]


async def test_reads_stay_at_the_read_version(engine: Engine) -> None:
    """Once a transaction has read, later commits by others are invisible to it."""
    await store(engine, {b"a": b"old-a", b"b": b"old-b"})
    tr = engine.create_transaction()
    assert await tr.get(b"a") == b"old-a"
    await store(engine, {b"a": b"new-a", b"b": b"new-b", b"c": b"new-c"})
    assert await tr.get(b"a") == b"old-a"
    assert await tr.get(b"b") == b"old-b"
    assert await tr.get(b"c") is None
    assert [kv.value for kv in await tr.get_range(b"", b"\xff").to_list()] == [b"old-a", b"old-b"]
    tr.cancel()


# -- range reads and key selectors -------------------------------------------------------------

SELECTOR_KEYS = [b"b", b"d", b"f", b"h"]
ANCHORS = [b"", b"a", b"b", b"c", b"d", b"h", b"i", b"z"]
CONSTRUCTORS = [
    KeySelector.last_less_than,
    KeySelector.last_less_or_equal,
    KeySelector.first_greater_than,
    KeySelector.first_greater_or_equal,
]


def all_selectors() -> list[KeySelector]:
    return [
        make(anchor) + offset
        for make in CONSTRUCTORS
        for anchor in ANCHORS
        for offset in (-2, -1, 0, 1, 2)
    ]


async def test_get_range_begin_inclusive_end_exclusive(engine: Engine) -> None:
    """get_range(b, e) returns keys >= b and < e, in key order."""
    await store(engine, {k: k.upper() for k in SELECTOR_KEYS})
    tr = engine.create_transaction()
    rows = await tr.get_range(b"d", b"h").to_list()
    assert [(kv.key, kv.value) for kv in rows] == [(b"d", b"D"), (b"f", b"F")]
    assert await tr.get_range(b"c", b"c").to_list() == []
    assert await tr.get_range(b"h", b"d").to_list() == []
    assert [kv.key for kv in await tr.get_range(b"", b"\xff").to_list()] == SELECTOR_KEYS


async def test_key_selector_constructors(engine: Engine) -> None:
    """The four constructors name the documented neighbours of a key."""
    await store(engine, {k: b"" for k in SELECTOR_KEYS})
    tr = engine.create_transaction()
    assert await tr.get_key(KeySelector.first_greater_or_equal(b"d")) == b"d"
    assert await tr.get_key(KeySelector.first_greater_or_equal(b"c")) == b"d"
    assert await tr.get_key(KeySelector.first_greater_than(b"d")) == b"f"
    assert await tr.get_key(KeySelector.last_less_or_equal(b"d")) == b"d"
    assert await tr.get_key(KeySelector.last_less_or_equal(b"e")) == b"d"
    assert await tr.get_key(KeySelector.last_less_than(b"d")) == b"b"
    assert await tr.get_key(KeySelector.first_greater_or_equal(b"d") + 2) == b"h"
    assert await tr.get_key(KeySelector.last_less_than(b"b")) == b""
    assert await tr.get_key(KeySelector.first_greater_than(b"h")) == b"\xff"


async def test_get_key_matches_reference_resolution(engine: Engine) -> None:
    """Every constructor, around every kind of anchor, with offsets -2..2, resolves as FDB's
    rule says: move `offset` keys from the last key < (or <=) the anchor."""
    await store(engine, {k: b"" for k in SELECTOR_KEYS})
    tr = engine.create_transaction()
    for selector in all_selectors():
        assert await tr.get_key(selector) == reference_resolve(SELECTOR_KEYS, selector), selector


async def test_get_range_with_selector_bounds(engine: Engine) -> None:
    """A range bounded by selectors holds the keys between the keys they resolve to."""
    await store(engine, {k: b"" for k in SELECTOR_KEYS})
    tr = engine.create_transaction()
    selectors = all_selectors()
    rng = random.Random(7)
    for begin, end in [(rng.choice(selectors), rng.choice(selectors)) for _ in range(150)]:
        low, high = reference_resolve(SELECTOR_KEYS, begin), reference_resolve(SELECTOR_KEYS, end)
        expected = [k for k in SELECTOR_KEYS if low <= k < high]
        forward = [kv.key for kv in await tr.get_range(begin, end).to_list()]
        backward = [kv.key for kv in await tr.get_range(begin, end, reverse=True).to_list()]
        limited = [kv.key for kv in await tr.get_range(begin, end, limit=1).to_list()]
        assert forward == expected, (begin, end)
        assert backward == expected[::-1], (begin, end)
        assert limited == expected[:1], (begin, end)


async def test_limit_and_reverse(engine: Engine) -> None:
    """limit caps the rows; reverse returns them from the end, and a limit then keeps the last."""
    await store(engine, {row_key(i): row_value(i) for i in range(10)})
    tr = engine.create_transaction()
    first = await tr.get_range(row_key(0), row_key(10), limit=3).to_list()
    last = await tr.get_range(row_key(0), row_key(10), limit=3, reverse=True).to_list()
    everything_reversed = await tr.get_range(row_key(0), row_key(10), reverse=True).to_list()
    assert [kv.key for kv in first] == [row_key(0), row_key(1), row_key(2)]
    assert [kv.key for kv in last] == [row_key(9), row_key(8), row_key(7)]
    assert [kv.key for kv in everything_reversed] == [row_key(i) for i in reversed(range(10))]
    assert len(await tr.get_range(row_key(0), row_key(10), limit=50).to_list()) == 10


async def test_get_range_startswith(engine: Engine) -> None:
    """get_range_startswith covers exactly the keys under a prefix, 0xff bytes included."""
    await store(engine, {k: b"" for k in (b"p", b"p\x00", b"p\xff\xff", b"pa", b"q", b"o\xff")})
    tr = engine.create_transaction()
    keys = [kv.key for kv in await tr.get_range_startswith(b"p").to_list()]
    assert keys == [b"p", b"p\x00", b"pa", b"p\xff\xff"]


# -- paging ------------------------------------------------------------------------------------

#: More rows than the first pages (256, 512, ...) and the largest page (4096) add up to.
MANY = 9000


@pytest.fixture
async def many_rows(engine: Engine) -> list[tuple[bytes, bytes]]:
    rows = [(row_key(i), row_value(i)) for i in range(MANY)]
    await store(engine, rows)
    return rows


async def test_streaming_a_large_range(
    engine: Engine, many_rows: list[tuple[bytes, bytes]]
) -> None:
    """`async for` over thousands of rows yields each exactly once, in order, both ways."""
    tr = engine.create_transaction()
    forward = [(kv.key, kv.value) async for kv in tr.get_range(b"row/", b"row0")]
    backward = [(kv.key, kv.value) async for kv in tr.get_range(b"row/", b"row0", reverse=True)]
    assert forward == many_rows
    assert backward == many_rows[::-1]


@pytest.mark.parametrize("limit", [255, 256, 257, 4096, 5000, MANY - 1])
async def test_limits_across_pages(
    engine: Engine, many_rows: list[tuple[bytes, bytes]], limit: int
) -> None:
    """A limit at, around and beyond page sizes returns exactly that many rows."""
    tr = engine.create_transaction()
    forward = await tr.get_range(b"row/", b"row0", limit=limit).to_list()
    backward = await tr.get_range(b"row/", b"row0", limit=limit, reverse=True).to_list()
    assert [(kv.key, kv.value) for kv in forward] == many_rows[:limit]
    assert [(kv.key, kv.value) for kv in backward] == many_rows[::-1][:limit]


async def test_breaking_out_of_a_stream(
    engine: Engine, many_rows: list[tuple[bytes, bytes]]
) -> None:
    """Leaving an `async for` early is fine: the transaction keeps reading and can commit."""
    tr = engine.create_transaction()
    seen: list[bytes] = []
    async for kv in tr.get_range(b"row/", b"row0"):
        seen.append(kv.key)
        if len(seen) == 300:
            break
    assert seen == [key for key, _ in many_rows[:300]]
    assert await tr.get(row_key(MANY - 1)) == row_value(MANY - 1)
    tr.set(b"done", b"1")
    await tr.commit()
    assert await read(engine, b"done") == b"1"


async def test_a_stream_keeps_its_read_version_between_pages(
    engine: Engine, many_rows: list[tuple[bytes, bytes]]
) -> None:
    """Rows committed by others while a range is being streamed do not show up in it."""
    tr = engine.create_transaction()
    seen: list[tuple[bytes, bytes]] = []
    async for kv in tr.get_range(b"row/", b"row0"):
        seen.append((kv.key, kv.value))
        if len(seen) == 100:
            await store(engine, {row_key(8000): b"changed", row_key(8000) + b"+": b"inserted"})
    assert seen == many_rows


# -- read your writes --------------------------------------------------------------------------


async def test_reads_see_own_sets_and_clears(engine: Engine) -> None:
    """A transaction reads its own uncommitted sets and clears, which others cannot see."""
    await store(engine, {b"a": b"stored-a", b"b": b"stored-b"})
    tr = engine.create_transaction()
    tr.set(b"a", b"mine")
    tr.clear(b"b")
    tr.set(b"c", b"new")
    assert await tr.get(b"a") == b"mine"
    assert await tr.get(b"b") is None
    assert await tr.get(b"c") == b"new"
    assert await read(engine, b"a") == b"stored-a"
    assert await read(engine, b"c") is None
    await tr.commit()
    assert await read(engine, b"a") == b"mine"
    assert await read(engine, b"b") is None


async def test_set_inside_an_own_clear_range(engine: Engine) -> None:
    """After clear_range, only keys set again afterwards are visible inside the range."""
    await store(engine, {k: b"stored" for k in (b"a", b"b", b"c", b"d", b"e")})
    tr = engine.create_transaction()
    tr.set(b"c2", b"before-clear")
    tr.clear_range(b"b", b"e")
    tr.set(b"c", b"after-clear")
    assert await tr.get(b"b") is None
    assert await tr.get(b"c2") is None
    assert await tr.get(b"c") == b"after-clear"
    rows = [(kv.key, kv.value) for kv in await tr.get_range(b"", b"\xff").to_list()]
    expected = [(b"a", b"stored"), (b"c", b"after-clear"), (b"e", b"stored")]
    assert rows == expected
    await tr.commit()
    assert await read_range(engine, b"", b"\xff") == expected


async def test_atomic_ops_are_seen_by_later_reads(engine: Engine) -> None:
    """Atomic ops apply to the stored value when read later in the same transaction, whether
    the key was read before, never read, or written by the transaction itself."""
    await store(engine, {b"read": le64(10), b"unread": le64(20)})
    tr = engine.create_transaction()
    assert await tr.get(b"read") == le64(10)
    tr.add(b"read", le64(5))
    tr.add(b"unread", le64(5))
    tr.add(b"unread", le64(1))
    tr.set(b"local", le64(100))
    tr.add(b"local", le64(7))
    tr.max(b"missing", le64(3))
    assert await tr.get(b"read") == le64(15)
    assert await tr.get(b"unread") == le64(26)
    assert await tr.get(b"local") == le64(107)
    assert await tr.get(b"missing") == le64(3)
    rows = {kv.key: kv.value for kv in await tr.get_range(b"", b"\xff").to_list()}
    assert rows == {
        b"read": le64(15),
        b"unread": le64(26),
        b"local": le64(107),
        b"missing": le64(3),
    }
    await tr.commit()
    assert await read(engine, b"unread") == le64(26)


async def test_range_reads_merge_local_writes_with_stored_rows(engine: Engine) -> None:
    """Across several pages, forward, reverse and limited range reads show stored rows overlaid
    with the transaction's sets, clears, clear ranges and atomic ops."""
    stored = {row_key(i): row_value(i) for i in range(0, 6000, 2)}
    await store(engine, stored)
    model = dict(stored)
    tr = engine.create_transaction()
    for i in range(1, 6000, 7):  # new keys between stored ones
        tr.set(row_key(i), b"new")
        model[row_key(i)] = b"new"
    for i in range(0, 6000, 22):  # overwrite some stored keys
        tr.set(row_key(i), b"over")
        model[row_key(i)] = b"over"
    for i in range(4, 6000, 26):  # clear some
        tr.clear(row_key(i))
        model.pop(row_key(i), None)
    tr.clear_range(row_key(3000), row_key(3500))
    for key in [k for k in model if row_key(3000) <= k < row_key(3500)]:
        del model[key]
    tr.set(row_key(3200), b"reborn")
    model[row_key(3200)] = b"reborn"
    tr.append_if_fits(row_key(10), b"+tail")
    model[row_key(10)] += b"+tail"
    tr.set(b"row0-outside", b"x")  # outside the range read below

    expected = sorted(model.items())
    forward = [(kv.key, kv.value) async for kv in tr.get_range(b"row/", b"row0")]
    backward = [(kv.key, kv.value) async for kv in tr.get_range(b"row/", b"row0", reverse=True)]
    limited = await tr.get_range(b"row/", b"row0", limit=1000, reverse=True).to_list()
    assert forward == expected
    assert backward == expected[::-1]
    assert [(kv.key, kv.value) for kv in limited] == expected[::-1][:1000]
    snap = [(kv.key, kv.value) async for kv in tr.snapshot.get_range(b"row/", b"row0")]
    assert snap == expected
    await tr.commit()
    assert await read_range(engine, b"row/", b"row0") == expected


async def test_get_key_sees_own_writes(engine: Engine) -> None:
    """Key selectors resolve over the transaction's view, own inserts and clears included."""
    await store(engine, {k: b"" for k in SELECTOR_KEYS})
    tr = engine.create_transaction()
    tr.set(b"e", b"")
    tr.clear(b"f")
    view = [b"b", b"d", b"e", b"h"]
    for selector in all_selectors():
        assert await tr.get_key(selector) == reference_resolve(view, selector), selector


# -- snapshot reads ----------------------------------------------------------------------------


async def test_snapshot_reads_share_version_and_own_writes(engine: Engine) -> None:
    """Snapshot reads see the same read version and the transaction's own writes."""
    await store(engine, {b"a": b"1", b"b": b"2"})
    tr = engine.create_transaction()
    assert await tr.snapshot.get(b"a") == b"1"
    await store(engine, {b"a": b"changed"})
    tr.set(b"b", b"mine")
    tr.set(b"c", b"3")
    assert await tr.snapshot.get(b"a") == b"1"
    assert await tr.snapshot.get(b"b") == b"mine"
    rows = await tr.snapshot.get_range(b"", b"\xff").to_list()
    assert [(kv.key, kv.value) for kv in rows] == [(b"a", b"1"), (b"b", b"mine"), (b"c", b"3")]
    assert await tr.snapshot.get_key(KeySelector.first_greater_than(b"b")) == b"c"
    assert await tr.snapshot.get_read_version() == await tr.get_read_version()


# -- atomic operations -------------------------------------------------------------------------

F = b"\xff"
ATOMIC_CASES: list[tuple[str, str, bytes | None, bytes, bytes | None]] = [
    # (id, op, existing, param, expected)
    ("add-missing", "add", None, b"\x05\x00", b"\x05\x00"),
    ("add-simple", "add", b"\x01\x00", b"\x02\x00", b"\x03\x00"),
    ("add-carry", "add", b"\xff\x00", b"\x01\x00", b"\x00\x01"),
    ("add-overflow-truncates", "add", F + F, b"\x01\x00", b"\x00\x00"),
    ("add-short-existing-zero-extends", "add", b"\x05", b"\x01\x00\x00", b"\x06\x00\x00"),
    ("add-long-existing-truncates", "add", b"\x01\x02\x03", b"\x01", b"\x02"),
    ("add-minus-one", "add", le64(16), F * 8, le64(15)),
    ("max-missing", "max", None, b"\x05\x00", b"\x05\x00"),
    ("max-keeps-existing", "max", b"\x00\x01", b"\xff\x00", b"\x00\x01"),
    ("max-little-endian", "max", b"\x01\x00", b"\x00\x01", b"\x00\x01"),
    ("max-short-existing", "max", b"\x07", b"\x03\x00", b"\x07\x00"),
    ("max-long-existing-truncates", "max", b"\x01\x00\x00\x01", b"\x02\x00", b"\x02\x00"),
    ("min-missing", "min", None, b"\x05\x00", b"\x05\x00"),
    ("min-takes-param", "min", b"\x00\x01", b"\xff\x00", b"\xff\x00"),
    ("min-keeps-existing", "min", b"\x02", b"\x03\x00", b"\x02\x00"),
    ("min-long-existing-truncates", "min", b"\x01\x00\x00\x01", b"\x02\x00", b"\x01\x00"),
    ("byte_max-longer-wins", "byte_max", b"abc", b"abd", b"abd"),
    ("byte_max-keeps-existing", "byte_max", b"b", b"abc", b"b"),
    ("byte_max-missing", "byte_max", None, b"abc", b"abc"),
    ("byte_min-prefix-is-smaller", "byte_min", b"abc", b"ab", b"ab"),
    ("byte_min-keeps-existing", "byte_min", b"a", b"abc", b"a"),
    ("byte_min-missing", "byte_min", None, b"abc", b"abc"),
    ("bit_and", "bit_and", b"\x0f\xf0", b"\xff\x0f", b"\x0f\x00"),
    ("bit_and-missing-stores-param", "bit_and", None, b"\x0f\x0f", b"\x0f\x0f"),
    ("bit_and-short-existing", "bit_and", b"\x0f", F + F, b"\x0f\x00"),
    ("bit_or", "bit_or", b"\x0f\x00", b"\xf0\x01", b"\xff\x01"),
    ("bit_or-missing", "bit_or", None, b"\x01\x02", b"\x01\x02"),
    ("bit_or-short-existing", "bit_or", b"\x01", b"\x00\x02", b"\x01\x02"),
    ("bit_xor", "bit_xor", b"\xff\x0f", b"\x0f\x0f", b"\xf0\x00"),
    ("bit_xor-missing", "bit_xor", None, b"\x0f\x0f", b"\x0f\x0f"),
    ("compare_and_clear-equal-clears", "compare_and_clear", b"same", b"same", None),
    ("compare_and_clear-different-keeps", "compare_and_clear", b"this", b"that", b"this"),
    ("compare_and_clear-missing", "compare_and_clear", None, b"x", None),
    ("append_if_fits", "append_if_fits", b"ab", b"cd", b"abcd"),
    ("append_if_fits-missing", "append_if_fits", None, b"cd", b"cd"),
    ("append_if_fits-exactly-fits", "append_if_fits", b"x" * 99_998, b"yz", b"x" * 99_998 + b"yz"),
    ("append_if_fits-too-long-unchanged", "append_if_fits", b"x" * 99_999, b"yz", b"x" * 99_999),
]


def apply_op(tr: Transaction, op: str, key: bytes, param: bytes) -> None:
    getattr(tr, op)(key, param)


@pytest.mark.parametrize(
    ("op", "existing", "param", "expected"),
    [case[1:] for case in ATOMIC_CASES],
    ids=[case[0] for case in ATOMIC_CASES],
)
async def test_atomic_op_on_committed_value(
    engine: Engine, op: str, existing: bytes | None, param: bytes, expected: bytes | None
) -> None:
    """A blind atomic op applied at commit turns the stored value into the expected one."""
    if existing is not None:
        await store(engine, {b"k": existing})
    tr = engine.create_transaction()
    apply_op(tr, op, b"k", param)
    await tr.commit()
    assert await read(engine, b"k") == expected


@pytest.mark.parametrize(
    ("op", "existing", "param", "expected"),
    [case[1:] for case in ATOMIC_CASES],
    ids=[case[0] for case in ATOMIC_CASES],
)
async def test_atomic_op_read_back_in_the_same_transaction(
    engine: Engine, op: str, existing: bytes | None, param: bytes, expected: bytes | None
) -> None:
    """Reading after the op, in the same transaction, gives the value the commit will store:
    over a stored value, over a value the transaction set itself, and over its own clear."""
    # Always commit something first: see test_first_commit_may_follow_a_read for why.
    await store(engine, {b"stored": existing} if existing is not None else {b"seed": b""})
    tr = engine.create_transaction()
    apply_op(tr, op, b"stored", param)
    if existing is None:
        tr.clear(b"local")
    else:
        tr.set(b"local", existing)
    apply_op(tr, op, b"local", param)
    assert await tr.get(b"stored") == expected
    assert await tr.get(b"local") == expected
    await tr.commit()
    assert await read(engine, b"stored") == expected
    assert await read(engine, b"local") == expected


async def test_atomic_ops_compose_in_order(engine: Engine) -> None:
    """Several atomic ops on one key apply in the order issued."""
    await store(engine, {b"k": b"\x01\x00"})
    tr = engine.create_transaction()
    tr.add(b"k", b"\x04\x00")  # 5
    tr.max(b"k", b"\x03\x00")  # 5
    tr.bit_xor(b"k", b"\x01\x00")  # 4
    tr.min(b"k", b"\x02\x00")  # 2
    await tr.commit()
    assert await read(engine, b"k") == b"\x02\x00"


async def test_concurrent_adds_all_land_without_retries(engine: Engine) -> None:
    """50 concurrent transactions that each read an unrelated key and add 1 to one counter
    total exactly 50, and none of them conflicts, since atomic ops add no read conflict."""
    await store(engine, {b"seed": b""})  # see test_first_commit_may_follow_a_read
    calls = 0

    def increment(index: int) -> Any:
        async def fn(tr: Transaction) -> None:
            nonlocal calls
            calls += 1
            await tr.get(b"unrelated/%d" % index)
            tr.add(b"counter", le64(1))

        return fn

    await asyncio.gather(*(engine.transact(increment(i), timeout=30) for i in range(50)))
    assert await read(engine, b"counter") == le64(50)
    assert calls == 50


# -- versionstamps and versions ----------------------------------------------------------------


async def test_versionstamps_increase_across_commits(engine: Engine) -> None:
    """Each commit's versionstamp is 10 bytes and greater than the one before, and the value
    written with set_versionstamped_value holds exactly that stamp."""
    stamps: list[bytes] = []
    for index in range(5):
        tr = engine.create_transaction()
        tr.set_versionstamped_value(
            b"stamp/%d" % index, pack_with_versionstamp((Versionstamp(), index))
        )
        future = tr.get_versionstamp()
        await tr.commit()
        stamp = await future
        assert len(stamp) == 10
        (written, number) = unpack(await read(engine, b"stamp/%d" % index) or b"")
        assert written == Versionstamp(stamp) and number == index
        stamps.append(stamp)
    assert stamps == sorted(stamps) and len(set(stamps)) == 5


async def test_concurrent_commits_get_distinct_stamps(engine: Engine) -> None:
    """Transactions committed together (one batch) still get distinct, ordered stamps."""

    async def commit_one(index: int) -> tuple[int, bytes]:
        tr = engine.create_transaction()
        tr.set_versionstamped_key(pack_with_versionstamp(("log", Versionstamp())), b"%d" % index)
        future = tr.get_versionstamp()
        await tr.commit()
        return tr.get_committed_version(), await future

    results = await asyncio.gather(*(commit_one(i) for i in range(20)))
    stamps = [stamp for _, stamp in results]
    assert len(set(stamps)) == 20
    for version, stamp in results:
        assert stamp[:8] == version.to_bytes(8, "big")
    rows = await engine.create_transaction().get_range_startswith(pack(("log",))).to_list()
    keys = [kv.key for kv in rows]
    assert [unpack(key)[1].tr_version for key in keys] == sorted(stamps)


async def test_user_versions_share_one_stamp(engine: Engine) -> None:
    """Several versionstamped keys in one transaction share its 10-byte stamp and sort by the
    2-byte user version, whatever order they were written in."""
    order = [3, 0, 4, 1, 2]
    tr = engine.create_transaction()
    for user_version in order:
        key = pack_with_versionstamp(("events", Versionstamp(user_version=user_version)))
        tr.set_versionstamped_key(key, b"%d" % user_version)
    future = tr.get_versionstamp()
    await tr.commit()
    stamp = await future
    rows = await engine.create_transaction().get_range_startswith(pack(("events",))).to_list()
    stamps = [unpack(kv.key)[1] for kv in rows]
    assert [s.tr_version for s in stamps] == [stamp] * 5
    assert [s.user_version for s in stamps] == [0, 1, 2, 3, 4]
    assert [kv.value for kv in rows] == [b"0", b"1", b"2", b"3", b"4"]


async def test_versionstamped_value_is_unreadable_before_commit(engine: Engine) -> None:
    """Reading a key whose value holds the not yet known stamp fails with 1036."""
    tr = engine.create_transaction()
    tr.set_versionstamped_value(b"k", pack_with_versionstamp((Versionstamp(),)))
    error = await expect_error(1036, tr.get(b"k"))
    assert error.name == "accessed_unreadable"


async def test_versionstamped_key_range_is_unreadable_before_commit(engine: Engine) -> None:
    """A range read over where a versionstamped key may land fails with 1036, as in FDB,
    whose read-your-writes map marks that whole candidate range unreadable; it must not
    silently leave the new key out."""
    await store(engine, {pack(("log", "before")): b""})
    tr = engine.create_transaction()
    tr.set_versionstamped_key(pack_with_versionstamp(("log", Versionstamp())), b"v")
    await expect_error(1036, tr.get_range_startswith(pack(("log",))).to_list())


async def test_get_versionstamp_of_a_read_only_transaction(engine: Engine) -> None:
    """A transaction without writes has no commit version, so its stamp fails with 2021."""
    tr = engine.create_transaction()
    await tr.get(b"anything")
    future = tr.get_versionstamp()
    await tr.commit()
    error = await expect_error(2021, asyncio.wait_for(future, 5))
    assert error.name == "no_commit_version"
    assert tr.get_committed_version() == -1


async def test_committed_version(engine: Engine) -> None:
    """The committed version is -1 before commit, then newer than the read version and not
    newer than later transactions' read versions; successive commits increase it."""
    versions: list[int] = []
    for index in range(3):
        tr = engine.create_transaction()
        read_version = await tr.get_read_version()
        tr.set(b"k", b"%d" % index)
        assert tr.get_committed_version() == -1
        await tr.commit()
        committed = tr.get_committed_version()
        assert committed > read_version
        assert await engine.create_transaction().get_read_version() >= committed
        versions.append(committed)
    assert versions == sorted(versions) and len(set(versions)) == 3


# -- limits ------------------------------------------------------------------------------------


async def test_key_size_limit(engine: Engine) -> None:
    """Keys of 10,000 bytes are fine; longer ones fail with 2102 when set. Reading one finds
    nothing, as FoundationDB answers: no stored key can be that long."""
    longest = b"k" * 10_000
    await store(engine, {longest: b"v"})
    assert await read(engine, longest) == b"v"
    tr = engine.create_transaction()
    with pytest.raises(FDBError) as caught:
        tr.set(longest + b"k", b"v")
    assert caught.value.code == 2102 and caught.value.name == "key_too_large"
    assert await tr.get(longest + b"k") is None


async def test_value_size_limit(engine: Engine) -> None:
    """Values of 100,000 bytes are fine; longer ones fail with 2103."""
    await store(engine, {b"big": b"v" * 100_000})
    assert await read(engine, b"big") == b"v" * 100_000
    tr = engine.create_transaction()
    with pytest.raises(FDBError) as caught:
        tr.set(b"bigger", b"v" * 100_001)
    assert caught.value.code == 2103 and caught.value.name == "value_too_large"


async def test_transaction_size_limit(engine: Engine) -> None:
    """A transaction writing over 10,000,000 bytes fails at commit with 2101, writing nothing."""
    tr = engine.create_transaction()
    for index in range(101):
        tr.set(b"bulk/%03d" % index, b"v" * 99_990)
    tr.set(b"marker", b"1")
    error = await expect_error(2101, tr.commit())
    assert not error.retryable
    assert await read_range(engine, b"bulk/", b"bulk0") == []
    assert await read(engine, b"marker") is None


@pytest.mark.parametrize(
    "write",
    [
        lambda tr: tr.set(b"\xff/system", b"v"),
        lambda tr: tr.clear(b"\xff"),
        lambda tr: tr.add(b"\xff\xff", b"\x01"),
        lambda tr: tr.clear_range(b"a", b"\xff\x00"),
    ],
    ids=["set", "clear", "add", "clear_range"],
)
async def test_system_keys_are_off_limits(engine: Engine, write: Any) -> None:
    """Writing at or past b'\\xff' fails with 2004 key_outside_legal_range."""
    tr = engine.create_transaction()
    with pytest.raises(FDBError) as caught:
        write(tr)
    assert caught.value.code == 2004 and caught.value.name == "key_outside_legal_range"


@pytest.mark.parametrize(
    "read",
    [
        lambda tr: tr.get(b"\xff/system"),
        lambda tr: tr.snapshot.get(b"\xff"),
        lambda tr: tr.get_range(b"a", b"\xff\x00").to_list(),
        lambda tr: tr.get_key(KeySelector.first_greater_or_equal(b"\xff\x01")),
    ],
    ids=["get", "snapshot_get", "get_range", "get_key"],
)
async def test_system_keys_are_unreadable(engine: Engine, read: Any) -> None:
    """Reading at or past b'\\xff' (a range ending past it) fails with 2004, as in FDB."""
    tr = engine.create_transaction()
    await expect_error(2004, read(tr))


async def test_range_up_to_the_end_of_the_user_keyspace(engine: Engine) -> None:
    """b'\\xff' itself is a legal range end: it bounds every user key."""
    await store(engine, {b"\xfe": b"last"})
    tr = engine.create_transaction()
    rows = await tr.get_range(b"\xfe", b"\xff").to_list()
    assert [(kv.key, kv.value) for kv in rows] == [(b"\xfe", b"last")]


async def test_get_versionstamp_after_commit(engine: Engine) -> None:
    """Asking for the versionstamp after the commit returned still gives the commit's stamp."""
    tr = engine.create_transaction()
    before = tr.get_versionstamp()
    tr.set(b"stamped", b"v")
    await tr.commit()
    after = await asyncio.wait_for(tr.get_versionstamp(), 5)
    assert len(after) == 10
    assert after == await asyncio.wait_for(before, 5)


@pytest.mark.parametrize("limits", [Limits(transaction_time=0.5)])
async def test_transaction_too_old(engine: Engine, limits: Limits) -> None:
    """Past transaction_time after its first read, a transaction's reads and commit fail with
    retryable 1007 and nothing is written; the retry loop then succeeds on a fresh attempt."""
    await store(engine, {b"k": b"v"})
    old = engine.create_transaction()
    assert await old.get(b"k") == b"v"
    await asyncio.sleep(limits.transaction_time + 0.1)
    error = await expect_error(1007, old.get(b"k"))
    assert error.retryable and error.name == "transaction_too_old"

    writer = engine.create_transaction()
    await writer.get(b"k")
    writer.set(b"late", b"1")
    await asyncio.sleep(limits.transaction_time + 0.1)
    await expect_error(1007, writer.commit())
    assert await read(engine, b"late") is None

    calls = 0

    async def slow_first_time(tr: Transaction) -> None:
        nonlocal calls
        calls += 1
        await tr.get(b"k")
        if calls == 1:
            await asyncio.sleep(limits.transaction_time + 0.1)
        tr.set(b"late", b"retried")

    await engine.transact(slow_first_time)
    assert calls == 2
    assert await read(engine, b"late") == b"retried"


async def test_first_commit_may_follow_a_read(engine: Engine) -> None:
    """A new database's first commit may come from a transaction that read first: reading
    before anything was ever committed does not make the transaction too old."""
    tr = engine.create_transaction()
    assert await tr.get(b"k") is None
    tr.set(b"k", b"1")
    await tr.commit()
    assert await read(engine, b"k") == b"1"


@pytest.mark.slow
async def test_read_write_commit_after_an_idle_period(engine: Engine) -> None:
    """After no commits for longer than FDB's 5 s window, a transaction that reads and writes
    still commits: 1007 measures the transaction's own age, not the time since the last commit."""
    await store(engine, {b"k": b"1"})
    await asyncio.sleep(5.2)

    async def append(tr: Transaction) -> None:
        tr.set(b"k", (await tr.get(b"k") or b"") + b"2")

    await engine.transact(append, timeout=3)
    assert await read(engine, b"k") == b"12"


async def test_failed_commit_changes_nothing(engine: Engine) -> None:
    """A commit that fails with a conflict leaves every key as it was: sets, clears, clear
    ranges, atomic ops and versionstamped keys alike; its versionstamp fails too."""
    before = {b"a": b"1", b"b": b"2", b"r/1": b"x", b"r/2": b"y", b"n": le64(7), b"read": b"0"}
    await store(engine, before)
    tr = engine.create_transaction()
    await tr.get(b"read")
    tr.set(b"a", b"changed")
    tr.clear(b"b")
    tr.clear_range(b"r/", b"r0")
    tr.add(b"n", le64(1))
    tr.set(b"new", b"1")
    tr.set_versionstamped_key(pack_with_versionstamp(("vs", Versionstamp())), b"")
    stamp = tr.get_versionstamp()
    await store(engine, {b"read": b"1"})
    await expect_error(1020, tr.commit())
    await expect_error(1020, asyncio.wait_for(stamp, 5))
    after = dict(await read_range(engine, b"", b"\xff"))
    assert after == {**before, b"read": b"1"}
