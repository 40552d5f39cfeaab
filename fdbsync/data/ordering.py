"""Index elements: map a field value to the tuple element that stands for it in an index key.

Index keys are `fdb.tuple`-encoded, so a range scan returns entries in byte order. The element
chosen here makes byte order equal the value's natural order (numeric, chronological, code
point), and folds values Python calls equal (-0.0 and 0.0, Decimal 1.0 and 1.00, one instant in
two time zones) onto one key. Values with no such order (NaN, naive datetimes) are refused.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from collections.abc import Iterable
from decimal import Decimal

from .errors import IndexValueError

__all__ = ["index_element", "index_elements"]

# fdb.tuple writes an int's byte length in one byte, so 255 bytes is the most it can encode.
_INT_LIMIT = 1 << (255 * 8)

# Decimal classes, in numeric order; each is the first item of a Decimal's nested tuple.
_DEC_NEG_INF, _DEC_NEG, _DEC_ZERO, _DEC_POS, _DEC_POS_INF = range(5)
_COMPLEMENT = str.maketrans("0123456789", "9876543210")
# Ends a negative's complemented digits. It sorts above every digit, so a longer digit string
# (a larger magnitude, thus a smaller number) sorts before its own prefix.
_NEG_END = "~"

_US_PER_SECOND = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_SECOND
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def index_element(value: object) -> object:
    """The tuple element that stands for `value` in an index key, so that for two values a, b of
    the same supported type: pack((index_element(a),)) < pack((index_element(b),)) iff a < b, and
    equal iff a == b (after the normalisations below).

    None sorts before every other value. Aware datetimes (and aware times) sort by the instant
    they name, which is how Python compares them across zones; within one zone Python compares
    wall-clock fields, which differs only around a DST fold. Naive and aware times become
    comparable ints but mean different things: do not mix them in one field.

    Raises IndexValueError for NaN, naive datetimes, ints beyond ±2**2040, strings that are not
    valid Unicode, and unsupported types.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return index_element(value.value)
    if isinstance(value, int):
        if -_INT_LIMIT < value < _INT_LIMIT:
            return int(value)
        raise IndexValueError(
            f"int out of the indexable range ±2**2040 (exclusive): it has {value.bit_length()} bits"
        )
    if isinstance(value, float):
        if math.isnan(value):
            raise IndexValueError("NaN cannot be indexed: it is not ordered against any number")
        # -0.0 == 0.0 in Python, but fdb.tuple keeps the sign bit and would sort -0.0 first.
        return 0.0 if value == 0 else float(value)
    if isinstance(value, Decimal):
        return _decimal_element(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise IndexValueError(
                "str with a lone surrogate cannot be indexed: it has no UTF-8 encoding"
            ) from None
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dt.datetime):
        return _datetime_element(value)
    if isinstance(value, dt.date):
        return value.toordinal()
    if isinstance(value, dt.time):
        return _time_element(value)
    if isinstance(value, uuid.UUID):
        return value
    raise IndexValueError(f"values of type {type(value).__name__} cannot be indexed")


def index_elements(values: Iterable[object]) -> tuple[object, ...]:
    """`index_element` of each value, as a tuple ready to pack into an index key."""
    return tuple(index_element(value) for value in values)


def _decimal_element(value: Decimal) -> tuple[object, ...]:
    """(class,) for zero and infinities; else (class, exponent, digits), both ordered so that
    a larger magnitude sorts later for positives and earlier for negatives."""
    if value.is_nan():
        raise IndexValueError(f"NaN cannot be indexed: Decimal {value} is not ordered")
    if value.is_infinite():
        return (_DEC_NEG_INF,) if value.is_signed() else (_DEC_POS_INF,)
    if value.is_zero():
        return (_DEC_ZERO,)
    # Trailing zeros are stripped so 1.0 and 1.00 agree; the adjusted exponent (of the leading
    # digit) does not depend on them. With the exponent equal, digit strings compare as
    # fractions 0.d1d2..., which string order gets right because d1 is never 0.
    digits = "".join(map(str, value.as_tuple().digits)).rstrip("0")
    exponent = value.adjusted()
    if value.is_signed():
        return (_DEC_NEG, -exponent, digits.translate(_COMPLEMENT) + _NEG_END)
    return (_DEC_POS, exponent, digits)


def _timedelta_us(delta: dt.timedelta) -> int:
    return delta.days * _US_PER_DAY + delta.seconds * _US_PER_SECOND + delta.microseconds


def _datetime_element(value: dt.datetime) -> int:
    """Microseconds since 1970-01-01T00:00Z. Built from the fields, not by converting to UTC,
    so datetimes near year 1 or 9999 whose UTC instant falls outside that range still work."""
    offset = value.utcoffset()
    if offset is None:
        raise IndexValueError(
            f"naive datetime {value.isoformat()} cannot be indexed: "
            "index datetimes must be timezone-aware"
        )
    days = value.toordinal() - _EPOCH_ORDINAL
    return days * _US_PER_DAY + _time_of_day_us(value) - _timedelta_us(offset)


def _time_element(value: dt.time) -> int:
    """Microseconds since midnight, minus the UTC offset when there is one (as Python compares
    aware times), so an aware time's element may be negative or over a day."""
    offset = value.utcoffset()
    since_midnight = _time_of_day_us(value)
    return since_midnight if offset is None else since_midnight - _timedelta_us(offset)


def _time_of_day_us(value: dt.datetime | dt.time) -> int:
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    return seconds * _US_PER_SECOND + value.microsecond
