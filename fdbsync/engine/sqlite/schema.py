"""The sqlite engine's file format: one ordered key-value table plus conflict bookkeeping.

Durability is fixed: WAL journal with synchronous=FULL, so a commit is acknowledged only
after its WAL frames are fsynced. Acknowledged commits survive a killed process and a
power loss; a commit interrupted before acknowledgement leaves no trace.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ..errors import ErrorCode, FDBError

FORMAT_VERSION = 1

#: How long the bookkeeping for conflict checks is kept, in microseconds of version. It is
#: FoundationDB's 5-second MVCC window plus a margin; a transaction older than 5 s fails
#: with 1007 before it could need anything older.
MVCC_WINDOW_US = 5_000_000
PRUNE_AFTER_US = MVCC_WINDOW_US + 1_000_000

# journal_mode=WAL is a property of the file, set once by initialize(); these are per connection.
_PRAGMAS = (
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA temp_store=MEMORY",
)

# kv: the data, each row stamped with the commit version that last wrote it.
# tombstones: keys cleared within the MVCC window, so reads of a now-missing key still conflict.
# write_ranges: clear_range and explicit write conflict ranges within the MVCC window.
# meta: the current commit version and the format.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS kv (
        key BLOB PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_by_version ON kv(version)",
    """CREATE TABLE IF NOT EXISTS tombstones (
        key BLOB PRIMARY KEY, version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS tombstones_by_version ON tombstones(version)",
    """CREATE TABLE IF NOT EXISTS write_ranges (
        begin_key BLOB NOT NULL, end_key BLOB NOT NULL, version INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS write_ranges_by_version ON write_ranges(version)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta VALUES ('version', 0)",
    # Conflict bookkeeping older than this version is gone: older snapshots cannot commit.
    "INSERT OR IGNORE INTO meta VALUES ('pruned', 0)",
    f"INSERT OR IGNORE INTO meta VALUES ('format', {FORMAT_VERSION})",
)

BUSY_TIMEOUT_S = 10.0


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly), usable by any
    one thread at a time."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    for pragma in _PRAGMAS:
        conn.execute(pragma)
    return conn


def initialize(path: Path) -> None:
    """Create the file and its tables if needed; safe when several processes race to do it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        _use_wal(conn, path)
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            conn.execute(statement)
        (found,) = conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        conn.execute("COMMIT")
    finally:
        conn.close()
    if found != FORMAT_VERSION:
        raise RuntimeError(
            f"{path} has fdbsync sqlite format {found}; this version reads {FORMAT_VERSION}"
        )


def _use_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Switch the file to WAL. Changing the journal mode ignores the busy timeout, so when
    several processes create the file at once the losers retry until it is done."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)  # runs on a worker thread, never on the event loop
            delay = min(delay * 2, 0.05)
            continue
        if mode.lower() != "wal":
            raise RuntimeError(f"{path}: SQLite refused WAL mode (journal_mode is {mode})")
        return


def is_busy(error: sqlite3.Error) -> bool:
    """SQLite's "another connection holds the lock": passing, worth a retry."""
    return isinstance(error, sqlite3.OperationalError) and (
        "locked" in str(error) or "busy" in str(error)
    )


def as_fdb_error(error: sqlite3.Error, doing: str) -> FDBError:
    """A SQLite failure as the FDB error callers handle: busy is retryable, the rest is not."""
    code = ErrorCode.PROCESS_BEHIND if is_busy(error) else ErrorCode.OPERATION_FAILED
    return FDBError(code, f"sqlite, {doing}: {error}")


def current_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
    return int(version)
