"""Key encoding: tuple keys sort as their tuples do, round-trip exactly, and prefix helpers cover
exactly the keys that share a prefix.

The order is checked against an independent reference that implements FoundationDB's tuple
type order, never against `fdb.tuple`'s own comparison.
"""

from __future__ import annotations

import functools
import itertools
import math
import struct
import uuid
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fdbsync.engine import key_after, pack, prefix_range, strinc, tuple_range, unpack

# -- strategies --------------------------------------------------------------------------------

#: Integers around the 8-byte boundary where the encoding switches to length-prefixed form.
_BOUNDARY_INTS = [
    sign * (base + delta)
    for sign in (1, -1)
    for base in (2**8, 2**56, 2**63, 2**64, 2**1000)
    for delta in (-1, 0, 1)
]

integers: st.SearchStrategy[int] = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**2000), max_value=2**2000),
    st.sampled_from(_BOUNDARY_INTS),
)
floats: st.SearchStrategy[float] = st.one_of(
    st.floats(allow_nan=False),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, 5e-324, -5e-324, 1.7976931348623157e308]),
)
texts: st.SearchStrategy[str] = st.text(st.characters(codec="utf-8"), max_size=8)
byte_strings: st.SearchStrategy[bytes] = st.binary(max_size=8)

scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    byte_strings,
    texts,
    integers,
    floats,
    st.booleans(),
    st.uuids(),
)
elements: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12
)
tuples: st.SearchStrategy[tuple[Any, ...]] = st.lists(elements, max_size=5).map(tuple)

#: Pairs of one scalar type, so the within-type order (not just the type order) is exercised.
same_type_pairs: st.SearchStrategy[tuple[Any, Any]] = st.one_of(
    *(st.tuples(s, s) for s in (byte_strings, texts, integers, floats, st.booleans(), st.uuids()))
)


@st.composite
def tuples_sharing_a_prefix(draw: st.DrawFn) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Two tuples that agree on a common prefix and then differ (or one ends)."""
    prefix = draw(tuples)
    left = draw(st.lists(elements, max_size=3).map(tuple))
    if draw(st.booleans()):
        right = draw(st.lists(elements, max_size=3).map(tuple))
    else:
        first, second = draw(same_type_pairs)
        left, right = (first, *left), (second, *left)
    return prefix + left, prefix + right


# -- the reference order -----------------------------------------------------------------------


def _type_rank(value: Any) -> int:
    """FoundationDB's type order: null < bytes < string < nested tuple < integer < double
    < false < true < UUID. `bool` is tested before `int` because it subclasses it."""
    if value is None:
        return 0
    if isinstance(value, bytes):
        return 1
    if isinstance(value, str):
        return 2
    if isinstance(value, tuple):
        return 3
    if isinstance(value, bool):
        return 7 if value else 6
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 5
    if isinstance(value, uuid.UUID):
        return 8
    raise TypeError(f"no tuple type for {value!r}")


def _float_key(value: float) -> tuple[float, bool]:
    """Doubles sort by value, with -0.0 just before +0.0 (their encodings differ)."""
    return value, math.copysign(1.0, value) > 0


def _sign(number: int) -> int:
    return (number > 0) - (number < 0)


def _cmp(left: Any, right: Any) -> int:
    return int(left > right) - int(left < right)


def reference_compare(left: Any, right: Any) -> int:
    """Compare two tuple elements (or whole tuples) the way their encodings must sort."""
    rank_left, rank_right = _type_rank(left), _type_rank(right)
    if rank_left != rank_right:
        return _cmp(rank_left, rank_right)
    if left is None or isinstance(left, bool):
        return 0  # equal rank means equal value for null, false and true
    if isinstance(left, tuple):
        for a, b in zip(left, right, strict=False):
            outcome = reference_compare(a, b)
            if outcome:
                return outcome
        return _cmp(len(left), len(right))
    if isinstance(left, str):
        return _cmp(left.encode("utf-8"), right.encode("utf-8"))
    if isinstance(left, float):
        return _cmp(_float_key(left), _float_key(right))
    if isinstance(left, uuid.UUID):
        return _cmp(left.bytes, right.bytes)
    return _cmp(left, right)  # bytes and integers


def strictly_equal(left: Any, right: Any) -> bool:
    """Equality that tells True from 1, 1.0 from 1 and -0.0 from 0.0."""
    if type(left) is not type(right):
        return False
    if isinstance(left, tuple):
        return len(left) == len(right) and all(
            strictly_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, float):
        return struct.pack(">d", left) == struct.pack(">d", right)
    return bool(left == right)


# -- the reference itself ----------------------------------------------------------------------


def test_reference_order_is_fdb_type_order() -> None:
    """The reference ranks one value of each type in FoundationDB's documented order."""
    ladder: list[Any] = [None, b"", "", (), -(2**70), 0, 2**70, -math.inf, 0.0, math.inf]
    ladder += [False, True, uuid.UUID(int=0)]
    for lower, higher in itertools.pairwise(ladder):
        assert reference_compare(lower, higher) == -1, (lower, higher)
        assert reference_compare(higher, lower) == 1, (lower, higher)
    assert reference_compare(-0.0, 0.0) == -1
    assert reference_compare("\U0001f600", "\uffff") == 1  # UTF-8 order, not UTF-16 order


# -- byte order equals tuple order -------------------------------------------------------------


@settings(max_examples=400)
@given(tuples, tuples)
def test_byte_order_matches_tuple_order(left: tuple[Any, ...], right: tuple[Any, ...]) -> None:
    """Comparing packed keys gives the same answer as comparing the tuples."""
    assert _cmp(pack(left), pack(right)) == _sign(reference_compare(left, right))


@settings(max_examples=400)
@given(tuples_sharing_a_prefix())
@example(((1,), (1, None)))
@example((("a\x00",), ("a",)))
@example(((b"a\x00b",), (b"a\x00",)))
@example(((-0.0,), (0.0,)))
@example(((2**64 - 1,), (2**64,)))
@example(((-(2**64),), (-(2**64) + 1,)))
@example(((("\U0001f600",),), (("\uffff",),)))
@example((((None,),), ((),)))
@example((((None,),), ((b"",),)))
def test_byte_order_matches_tuple_order_past_a_common_prefix(
    pair: tuple[tuple[Any, ...], tuple[Any, ...]],
) -> None:
    """Tuples that agree on a prefix still compare by the first element that differs."""
    left, right = pair
    assert _cmp(pack(left), pack(right)) == _sign(reference_compare(left, right))


@given(same_type_pairs)
def test_scalars_of_one_type_sort_by_value(pair: tuple[Any, Any]) -> None:
    """Within a type, ints and floats sort by value, text by UTF-8, bytes and UUIDs bytewise."""
    left, right = pair
    assert _cmp(pack((left,)), pack((right,))) == _sign(reference_compare(left, right))


@given(st.lists(tuples, min_size=2, max_size=12))
def test_sorting_keys_sorts_tuples(items: list[tuple[Any, ...]]) -> None:
    """Sorting packed keys lists the tuples in reference order."""
    by_reference = sorted(items, key=functools.cmp_to_key(reference_compare))
    assert [pack(t) for t in by_reference] == sorted(pack(t) for t in items)


# -- round trips -------------------------------------------------------------------------------


@settings(max_examples=300)
@given(tuples)
def test_unpack_inverts_pack(items: tuple[Any, ...]) -> None:
    """Every tuple decodes to itself, types, float signs and nested structure included."""
    assert strictly_equal(unpack(pack(items)), items)


@given(tuples, st.binary(max_size=6))
def test_unpack_skips_a_prefix(items: tuple[Any, ...], prefix: bytes) -> None:
    """A key packed under a prefix starts with it and decodes with prefix_len."""
    key = pack(items, prefix=prefix)
    assert key.startswith(prefix)
    assert key[len(prefix) :] == pack(items)
    assert strictly_equal(unpack(key, prefix_len=len(prefix)), items)


def test_pack_distinguishes_bool_from_int() -> None:
    """True and 1 are different elements with different keys."""
    assert pack((True,)) != pack((1,))
    assert unpack(pack((True, 1, False, 0))) == (True, 1, False, 0)
    assert [type(v) for v in unpack(pack((True, 1)))] == [bool, int]


# -- strinc, prefix_range, tuple_range ---------------------------------------------------------

prefixes: st.SearchStrategy[bytes] = st.binary(min_size=1, max_size=6).filter(
    lambda b: b.rstrip(b"\xff") != b""
)
#: Keys near a prefix: often extending it, sometimes its successor's neighbourhood.
probe_suffixes: st.SearchStrategy[bytes] = st.binary(max_size=4) | st.sampled_from(
    [b"\x00", b"\xff", b"\xff\xff", b"\x01"]
)


@given(prefixes, probe_suffixes, st.binary(max_size=8))
def test_strinc_bounds_exactly_the_keys_with_the_prefix(
    prefix: bytes, suffix: bytes, other: bytes
) -> None:
    """A key starts with `prefix` exactly when prefix <= key < strinc(prefix)."""
    end = strinc(prefix)
    for key in (prefix + suffix, other, end + suffix, prefix[:-1] + suffix):
        assert key.startswith(prefix) == (prefix <= key < end), key


@given(prefixes)
def test_strinc_is_the_least_upper_bound(prefix: bytes) -> None:
    """strinc(prefix) is above the prefix and all its extensions, does not itself start with
    the prefix, and is no longer than it."""
    end = strinc(prefix)
    assert end > prefix and not end.startswith(prefix)
    assert len(end) <= len(prefix)
    assert prefix + b"\xff" * 20 < end


def test_strinc_examples() -> None:
    """Trailing 0xff bytes are dropped before the last byte is incremented."""
    assert strinc(b"ab") == b"ac"
    assert strinc(b"a\xff\xff") == b"b"
    assert strinc(b"\x00") == b"\x01"
    assert strinc(b"\x01\xfe\xff") == b"\x01\xff"


@pytest.mark.parametrize("key", [b"", b"\xff", b"\xff\xff\xff"])
def test_strinc_rejects_keys_without_a_successor(key: bytes) -> None:
    """An empty key or one made only of 0xff has no successor prefix."""
    with pytest.raises(ValueError):
        strinc(key)


@given(prefixes, probe_suffixes, st.binary(max_size=8))
def test_prefix_range_covers_exactly_the_prefix(prefix: bytes, suffix: bytes, other: bytes) -> None:
    """prefix_range(p) is the [begin, end) of exactly the keys starting with p."""
    begin, end = prefix_range(prefix)
    assert begin == prefix
    for key in (prefix + suffix, other, end, prefix[:-1]):
        assert key.startswith(prefix) == (begin <= key < end), key


@given(tuples, elements, tuples)
def test_tuple_range_covers_extensions_only(
    items: tuple[Any, ...], extra: Any, unrelated: tuple[Any, ...]
) -> None:
    """Every longer tuple starting with `items` lies in tuple_range(items); `items` itself and
    tuples that do not extend it lie outside."""
    begin, end = tuple_range(items)
    assert begin <= pack((*items, extra)) < end
    assert not begin <= pack(items) < end
    extends = len(unrelated) > len(items) and strictly_equal(unrelated[: len(items)], items)
    assert (begin <= pack(unrelated) < end) == extends


@given(st.binary(max_size=8), st.binary(max_size=8))
def test_key_after_is_the_immediate_successor(key: bytes, other: bytes) -> None:
    """key_after(k) is greater than k, and no key lies strictly between them."""
    after = key_after(key)
    assert after > key
    assert not key < other < after
