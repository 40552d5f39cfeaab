"""The data layer: Pydantic models stored on the engine's keyspace, with tenants, indexes and
SchemaMetadata counters. Written against the engine API only (see docs/keyspace.md)."""

from ..engine.keys import Versionstamp
from .errors import (
    CorruptRecordError,
    DataError,
    DuplicateKeyError,
    FieldError,
    IndexNotReadyError,
    IndexValueError,
    MissingIndexError,
    ModelDefinitionError,
    QueryError,
    RecordNotFoundError,
    TenancyError,
    TenantExistsError,
    TenantNotFoundError,
    UnknownModelError,
    ValueTooLargeError,
)
from .ids import VersionstampId, new_id
from .indexes import COUNTERS, Counters, Index, Indexer, SchemaMetadata
from .keyspace import IndexSpace, TenantSpace
from .model import Model, tenant_of
from .query import Between, Gt, Gte, Lt, Lte, Query
from .repo import Repo
from .tenants import Tenants

__all__ = [
    "COUNTERS",
    "Between",
    "CorruptRecordError",
    "Counters",
    "DataError",
    "DuplicateKeyError",
    "FieldError",
    "Gt",
    "Gte",
    "Index",
    "IndexNotReadyError",
    "IndexSpace",
    "IndexValueError",
    "Indexer",
    "Lt",
    "Lte",
    "MissingIndexError",
    "Model",
    "ModelDefinitionError",
    "Query",
    "QueryError",
    "RecordNotFoundError",
    "Repo",
    "SchemaMetadata",
    "TenancyError",
    "TenantExistsError",
    "TenantNotFoundError",
    "TenantSpace",
    "Tenants",
    "UnknownModelError",
    "ValueTooLargeError",
    "Versionstamp",
    "VersionstampId",
    "new_id",
    "tenant_of",
]
