"""The FoundationDB client: the official bindings at API version 730 and their C library.

Nothing here runs at import: the bindings select their API version once per process and load
libfdb_c when they do, so that happens the first time an `fdb://` engine opens.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import ErrorCode, FDBError
from ..limits import Limits

#: The API version fdbsync speaks: FoundationDB 7.3's, which 7.3 and newer client libraries serve.
API_VERSION = 730

#: FoundationDB's own ceilings for the limits an engine may be configured with.
MAX_KEY_SIZE = 10_000
MAX_VALUE_SIZE = 100_000
MAX_TRANSACTION_SIZE = 10_000_000
MIN_TRANSACTION_SIZE = 32
MAX_TRANSACTION_TIME = 5.0
MAX_WATCHES = 1_000_000

INSTALL_HINT = (
    "install the FoundationDB clients package, version 7.3 or newer (foundationdb-clients, "
    "which provides libfdb_c: https://github.com/apple/foundationdb/releases), or use "
    "sqlite:///path/to/file.db for development"
)

_lock = threading.Lock()
_network_started = False


def check_limits(limits: Limits) -> None:
    """ValueError for limits a FoundationDB cluster cannot honour (it may be stricter)."""
    problems = []
    if limits.key_size > MAX_KEY_SIZE:
        problems.append(f"key_size {limits.key_size} > {MAX_KEY_SIZE}")
    if limits.value_size > MAX_VALUE_SIZE:
        problems.append(f"value_size {limits.value_size} > {MAX_VALUE_SIZE}")
    if not MIN_TRANSACTION_SIZE <= limits.transaction_size <= MAX_TRANSACTION_SIZE:
        problems.append(
            f"transaction_size {limits.transaction_size} outside "
            f"{MIN_TRANSACTION_SIZE}..{MAX_TRANSACTION_SIZE}"
        )
    if not 0 < limits.transaction_time <= MAX_TRANSACTION_TIME:
        problems.append(f"transaction_time {limits.transaction_time} outside 0..5 s")
    if not 0 <= limits.max_watches <= MAX_WATCHES:
        problems.append(f"max_watches {limits.max_watches} outside 0..{MAX_WATCHES}")
    if problems:
        raise ValueError("FoundationDB cannot honour these limits: " + "; ".join(problems))


def load() -> Any:
    """The `fdb` bindings module with API version 730 selected and the network thread running.

    Raises FDBError naming what to install when libfdb_c is missing or too old.
    """
    global _network_started
    import fdb

    with _lock:
        try:
            fdb.api_version(API_VERSION)
        except Exception as error:  # the bindings raise plain Exceptions here
            raise _load_error(error) from error
        if not _network_started:
            try:
                fdb.impl.init()
            except fdb.FDBError as error:
                if error.code != ErrorCode.CLIENT_INVALID_OPERATION:
                    raise FDBError(error.code, "starting the FoundationDB client") from error
                # The application started the network itself (fdb.open): share it.
            _network_started = True
    return fdb


def open_database(fdb: Any, cluster_file: str | None, limits: Limits) -> Any:
    """A database handle of its own for one engine, with the engine's limits as options.

    Each engine gets its own handle (not `fdb.open`'s per-process cache), so its watch cap
    and size limit are its own.
    """
    where = cluster_file or "the default cluster file"
    if cluster_file is not None and not os.path.isfile(cluster_file):
        raise FDBError(1515, f"no cluster file at {cluster_file}")
    try:
        database = fdb.impl.create_database(cluster_file)
        database.options.set_max_watches(limits.max_watches)
        database.options.set_transaction_size_limit(limits.transaction_size)
    except fdb.FDBError as error:
        raise FDBError(error.code, f"opening {where}: {_describe(error)}") from error
    return database


def _load_error(error: Exception) -> FDBError:
    text = str(error)
    if isinstance(error, OSError) or "shared library" in text:
        detail = f"the FoundationDB client library (libfdb_c) could not be loaded: {INSTALL_HINT}"
    elif "already loaded" in text:  # the application selected another API version first
        detail = f"{text}; fdbsync needs API version {API_VERSION}: select that one, or none"
    elif "API version" in text or "C library" in text:
        detail = f"{text}: {INSTALL_HINT}"
    else:
        detail = f"the FoundationDB bindings could not start ({text}): {INSTALL_HINT}"
    return FDBError(ErrorCode.OPERATION_FAILED, detail)


def _describe(error: Any) -> str:
    try:
        description = error.description
    except Exception:
        return f"error {error.code}"
    if isinstance(description, bytes):
        description = description.decode(errors="replace")
    return str(description)
