"""Where everything lives: tuple keys with the tenant as the first element.

Within a tenant, the second element picks the section (see docs/keyspace.md)::

    (tenant, "r", source, pk)               a record (or a split record's header)
    (tenant, "r", source, pk, part)         the parts of a split record
    (tenant, "i", source, index, *values, pk)   index entries
    (tenant, "m", source, name, *values, counter)  SchemaMetadata counters
    (tenant, "s", ...)                      system data: index definitions and build state
    (tenant, "u", ...)                      the application's own keys
    (None, "tenants", name)                 the tenant registry
    (None, layer, ...)                      a layer's own records, outside every tenant

A single-tenant repo uses the tenant "", which no named tenant can take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.base import Transaction
from ..engine.keys import has_incomplete_versionstamp, pack, pack_with_versionstamp, strinc
from .errors import ValueTooLargeError

__all__ = [
    "IndexSpace",
    "TenantSpace",
    "outside_tenants",
    "tenant_registry_key",
    "tenant_registry_range",
]

RECORDS = "r"
INDEXES = "i"
METADATA = "m"
SYSTEM = "s"
USER = "u"
DATA_SECTIONS = (RECORDS, INDEXES, METADATA, USER)

_REGISTRY = pack((None, "tenants"))


def tenant_registry_key(name: str) -> bytes:
    return pack((name,), _REGISTRY)


def tenant_registry_range() -> tuple[bytes, bytes]:
    return _REGISTRY, strinc(_REGISTRY)


def outside_tenants(layer: str, *elements: Any) -> bytes:
    """A key of `layer`'s own records, outside every tenant's keyspace (the web layer keeps
    which first-render tokens have connected there)."""
    if layer == "tenants":
        raise ValueError("'tenants' is the tenant registry's")
    return pack((None, layer, *elements))


def write(tr: Transaction, key_prefix: bytes, elements: tuple[Any, ...], value: bytes) -> None:
    """Set a key; a key holding an incomplete Versionstamp gets the commit's versionstamp."""
    if has_incomplete_versionstamp(elements):
        tr.set_versionstamped_key(pack_with_versionstamp(elements, key_prefix), value)
    else:
        tr.set(pack(elements, key_prefix), value)


@dataclass(frozen=True, slots=True)
class IndexSpace:
    """The keys of one index of one model in one tenant, handed to its `Indexer`."""

    prefix: bytes
    model_name: str
    index_name: str
    key_limit: int

    def key(self, elements: tuple[Any, ...]) -> bytes:
        return self._checked(pack(elements, self.prefix))

    def _checked(self, key: bytes, size: int | None = None) -> bytes:
        size = len(key) if size is None else size
        if size > self.key_limit:
            raise ValueTooLargeError(
                f"{self.model_name} index {self.index_name!r}: an entry key is {size} "
                f"bytes, over the {self.key_limit}-byte key limit"
            )
        return key

    def set(self, tr: Transaction, elements: tuple[Any, ...], value: bytes = b"") -> None:
        if has_incomplete_versionstamp(elements):
            key = pack_with_versionstamp(elements, self.prefix)
            # The last 4 bytes give the versionstamp's offset; they are not part of the key.
            tr.set_versionstamped_key(self._checked(key, len(key) - 4), value)
        else:
            tr.set(self.key(elements), value)

    def clear(self, tr: Transaction, elements: tuple[Any, ...]) -> None:
        key = pack(elements, self.prefix)
        if len(key) <= self.key_limit:  # a longer key was never written
            tr.clear(key)

    def add(self, tr: Transaction, elements: tuple[Any, ...], amount: int) -> None:
        tr.add(self.key(elements), amount.to_bytes(8, "little", signed=True))

    def range(self, elements: tuple[Any, ...] = ()) -> tuple[bytes, bytes]:
        """Every key that extends `elements` (see indexes._AFTER for the 0xff)."""
        begin = pack(elements, self.prefix) if elements else self.prefix
        return begin, begin + b"\xff"


class TenantSpace:
    """The key builder of one tenant."""

    def __init__(self, tenant: str, key_limit: int) -> None:
        self.tenant = tenant
        self.prefix = pack((tenant,))
        self.key_limit = key_limit

    def range(self) -> tuple[bytes, bytes]:
        return self.prefix, strinc(self.prefix)

    def key(self, *elements: Any) -> bytes:
        return pack(elements, self.prefix)

    def section(self, name: str) -> tuple[bytes, bytes]:
        begin = self.key(name)
        return begin, strinc(begin)

    def records(self, source: str) -> tuple[bytes, bytes]:
        begin = self.key(RECORDS, source)
        return begin, strinc(begin)

    def record_prefix(self, source: str) -> bytes:
        return self.key(RECORDS, source)

    def index(self, section: str, source: str, index_name: str, model_name: str) -> IndexSpace:
        return IndexSpace(
            self.key(section, source, index_name), model_name, index_name, self.key_limit
        )

    def index_state(self, source: str, index_name: str) -> bytes:
        return self.key(SYSTEM, "index", source, index_name)

    def index_states(self) -> tuple[bytes, bytes]:
        begin = self.key(SYSTEM, "index")
        return begin, strinc(begin)

    def user(self, *elements: Any) -> bytes:
        """A key for the application's own data, inside this tenant."""
        return self.key(USER, *elements)
