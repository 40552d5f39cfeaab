"""The engine layer: an async, FoundationDB-shaped key-value API and its engines."""

from .atomic import AtomicOp
from .base import Engine, KeyValue, RangeResult, ReadView, Transaction, Watch
from .errors import ErrorCode, FDBError
from .keys import (
    Versionstamp,
    key_after,
    pack,
    pack_with_versionstamp,
    prefix_range,
    strinc,
    tuple_range,
    unpack,
)
from .limits import Limits
from .retry import transactional
from .selectors import KeySelector
from .url import DEFAULT_URL, ENV_VAR, create_engine, resolve_url

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "AtomicOp",
    "Engine",
    "ErrorCode",
    "FDBError",
    "KeySelector",
    "KeyValue",
    "Limits",
    "RangeResult",
    "ReadView",
    "Transaction",
    "Versionstamp",
    "Watch",
    "create_engine",
    "key_after",
    "pack",
    "pack_with_versionstamp",
    "prefix_range",
    "resolve_url",
    "strinc",
    "transactional",
    "tuple_range",
    "unpack",
]
