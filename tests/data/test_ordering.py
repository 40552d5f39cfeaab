"""index_element: packed index keys sort like the values they stand for, for every supported
type over its full range, and refuse values that have no order."""

from __future__ import annotations

import enum
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from itertools import combinations
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from fdbsync.data.errors import IndexValueError
from fdbsync.data.ordering import index_element, index_elements
from fdbsync.engine.keys import pack, unpack

INT_LIMIT = 2**2040


def key(value: object, *rest: object) -> bytes:
    return pack((index_element(value), *rest))


def sign(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def instant(value: datetime) -> timedelta:
    """The UTC instant as a timedelta from datetime.min, which never overflows (converting to
    UTC can, near year 1 and 9999), and ignores Python's same-zone wall-clock comparison."""
    offset = value.utcoffset()
    assert offset is not None
    return value.replace(tzinfo=None) - datetime.min - offset


def time_instant(value: time) -> timedelta:
    return instant(datetime.combine(date(2000, 1, 2), value))


class Colour(enum.Enum):
    RED = 3
    GREEN = 1
    BLUE = 2


class Size(enum.Enum):
    SMALL = "s"
    MEDIUM = "m"
    LARGE = "l"


def build_decimal(negative: bool, digits: list[int], exponent: int) -> Decimal:
    return Decimal((int(negative), tuple(digits), exponent))


fixed_offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    ),
)

ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(INT_LIMIT - 1), max_value=INT_LIMIT - 1),
    st.sampled_from(
        [
            n * s
            for n in (0, 1, 255, 256, 2**64 - 2, 2**64 - 1, 2**64, 2**2032, INT_LIMIT - 1)
            for s in (1, -1)
        ]
    ),
)
floats = st.one_of(
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            x * s
            for x in (0.0, 5e-324, sys.float_info.min, 1.0, sys.float_info.max, float("inf"))
            for s in (1.0, -1.0)
        ]
    ),
)
DECIMAL_EDGES = [
    "Infinity", "-Infinity", "0", "-0", "0E+9", "-0E-9", "1.2", "1.23", "-1.2", "-1.23", "9", "10",
    "-9", "-10", "0.001", "0.01", "-0.001", "-0.01", "1E+99999", "1E-99999", "-1E+99999",
    "-1E-99999",
]  # fmt: skip
decimals = st.one_of(
    st.decimals(allow_nan=False),
    # Wide exponents and long coefficients.
    st.builds(
        build_decimal,
        st.booleans(),
        st.lists(st.integers(0, 9), min_size=1, max_size=40),
        st.integers(-(10**17), 10**17),
    ),
    # Few digits and exponents, so equal values written differently (1.0, 1.00) meet often.
    st.builds(
        build_decimal,
        st.booleans(),
        st.lists(st.integers(0, 9), min_size=1, max_size=4),
        st.integers(-3, 3),
    ),
    st.sampled_from([Decimal(s) for s in DECIMAL_EDGES]),
)
datetimes = st.datetimes(timezones=st.one_of(st.timezones(), fixed_offsets))


def identity(value: Any) -> Any:
    return value


CASES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], Any]]] = {
    "bool": (st.booleans(), identity),
    "int": (ints, identity),
    "float": (floats, identity),
    "decimal": (decimals, identity),
    "str": (st.text(), identity),
    "bytes": (st.binary(), identity),
    "datetime": (datetimes, instant),
    "date": (st.dates(), identity),
    "naive time": (st.times(), identity),
    "aware time": (st.times(timezones=fixed_offsets), time_instant),
    "uuid": (st.uuids(), identity),
    "int enum": (st.sampled_from(Colour), lambda member: member.value),
    "str enum": (st.sampled_from(Size), lambda member: member.value),
}


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_keys_sort_like_values(case: str, data: st.DataObject) -> None:
    strategy, order = CASES[case]
    values = data.draw(st.lists(strategy, min_size=2, max_size=6))
    for value in values:
        assert pack((None,)) < key(value), value
    for a, b in combinations(values, 2):
        expected = sign(order(a), order(b))
        assert sign(key(a), key(b)) == expected, (a, b)
        # A key with more elements after this one: equal elements leave the order to what
        # follows, unequal ones decide it whatever follows (no element is a prefix of another).
        for rest_a, rest_b in (("x", "x"), ("", "\x00"), ("\x00", "")):
            assert sign(key(a, rest_a), key(b, rest_b)) == (expected or sign(rest_a, rest_b))


def test_negative_zero_float_is_zero() -> None:
    assert key(-0.0) == key(0.0)
    assert key(-0.0) < key(5e-324)
    assert key(-5e-324) < key(-0.0)


@pytest.mark.parametrize(
    "a, b",
    [("1.0", "1.00"), ("1", "1.000"), ("100", "1E+2"), ("-0", "0"), ("0E+7", "-0.000"),
     ("-2.50", "-2.5")],
)  # fmt: skip
def test_equal_decimals_share_a_key(a: str, b: str) -> None:
    assert key(Decimal(a)) == key(Decimal(b))


def test_decimal_edges_order() -> None:
    ascending = "-Infinity -1E+99999 -10 -9 -1.23 -1.2 -0.01 -0.001 0 0.001 0.01 1.2 1.23 9 10"
    values = [Decimal(s) for s in [*ascending.split(), "1E+99999", "Infinity"]]
    keys = [key(value) for value in values]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_same_instant_in_different_zones() -> None:
    utc = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    paris = datetime(2024, 3, 1, 13, 0, tzinfo=ZoneInfo("Europe/Paris"))
    odd_offset = timezone(-timedelta(hours=5, minutes=30, microseconds=1))
    odd = datetime(2024, 3, 1, 6, 29, 59, 999_999, tzinfo=odd_offset)
    assert index_element(utc) == index_element(paris) == index_element(odd)


def test_datetime_element_is_microseconds_since_epoch() -> None:
    assert index_element(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert index_element(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == -1
    plus_5 = timezone(timedelta(hours=5))
    minus_5 = timezone(-timedelta(hours=5))
    # Instants just outside years 1..9999 in UTC still get exact elements, in order.
    assert key(datetime.min.replace(tzinfo=plus_5)) < key(datetime.min.replace(tzinfo=UTC))
    assert key(datetime.max.replace(tzinfo=UTC)) < key(datetime.max.replace(tzinfo=minus_5))


def test_other_scalar_elements() -> None:
    assert index_element(date(1, 1, 1)) == 1
    assert index_element(time(0, 0, 0, 1)) == 1
    assert index_element(time(1, tzinfo=timezone(timedelta(hours=1)))) == 0
    assert index_element(time(23, tzinfo=timezone(-timedelta(hours=2)))) == 25 * 3600 * 10**6
    assert index_element(bytearray(b"ab")) == index_element(memoryview(b"ab")) == b"ab"
    assert index_element(Colour.RED) == 3
    assert type(index_element(True)) is bool
    some = uuid.uuid4()
    assert index_element(some) == some


def test_int_bound_is_exact() -> None:
    for n in (INT_LIMIT - 1, -(INT_LIMIT - 1)):
        assert unpack(key(n)) == (n,)
    for n in (INT_LIMIT, -INT_LIMIT, INT_LIMIT * 7):
        with pytest.raises(IndexValueError, match=r"±2\*\*2040"):
            index_element(n)


class Point(BaseModel):
    x: int


@pytest.mark.parametrize(
    "value, message",
    [
        (float("nan"), "NaN"),
        (Decimal("NaN"), "NaN"),
        (Decimal("-sNaN"), "NaN"),
        (datetime(2024, 1, 1), "naive datetime.*timezone-aware"),
        ("ok\ud800", "surrogate"),
        ([1], "type list "),
        ({"a": 1}, "type dict "),
        ({1}, "type set "),
        (object(), "type object "),
        (Point(x=1), "type Point "),
        (timedelta(1), "type timedelta "),
        (1j, "type complex "),
    ],
)
def test_unindexable_values(value: object, message: str) -> None:
    with pytest.raises(IndexValueError, match=message):
        index_element(value)


def test_index_elements() -> None:
    assert index_elements([None, Size.SMALL, -0.0, Decimal("2.50")]) == (
        None,
        "s",
        0.0,
        index_element(Decimal("2.5")),
    )
    assert index_elements(iter(())) == ()
