"""fdbsync: live FastAPI + htmx pages on FoundationDB-shaped storage."""

from .engine import (
    Engine,
    ErrorCode,
    FDBError,
    KeySelector,
    Limits,
    Transaction,
    create_engine,
    transactional,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "Engine",
    "ErrorCode",
    "FDBError",
    "KeySelector",
    "Limits",
    "Transaction",
    "__version__",
    "create_engine",
    "transactional",
]
