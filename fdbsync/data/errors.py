"""The data layer's errors. Each names the model, field, index, tenant or limit involved."""

from __future__ import annotations


class DataError(Exception):
    """Base class of every data-layer error."""


class ModelDefinitionError(DataError, TypeError):
    """A model class declares something that cannot work (unknown field, bad index)."""


class UnknownModelError(DataError, LookupError):
    """A model the repo was not given."""


class TenancyError(DataError):
    """A call that would cross tenants, or needs a tenant it was not given."""


class TenantNotFoundError(TenancyError, LookupError):
    """The tenant does not exist."""


class TenantExistsError(TenancyError):
    """The tenant already exists."""


class RecordNotFoundError(DataError, LookupError):
    """The record to update or delete is not stored (any more)."""


class DuplicateKeyError(DataError):
    """An insert whose primary key is already stored."""


class QueryError(DataError, ValueError):
    """A query that cannot be answered as asked: unknown field, wrong value type, bad range."""


class MissingIndexError(QueryError):
    """No declared index answers the query; the message says which index to add."""


class IndexNotReadyError(QueryError):
    """The index that answers the query is declared but not built for this tenant."""


class IndexValueError(DataError, ValueError):
    """A value that cannot be stored in an index (NaN, a naive datetime, an unsupported type)."""


class ValueTooLargeError(DataError, ValueError):
    """A record or key over a limit: the model's max_value_size or the engine's key size."""


class CorruptRecordError(DataError):
    """A stored record whose parts do not match their checksum."""


class FieldError(DataError, ValueError):
    """A change naming a field the model does not have, or one that cannot change."""
