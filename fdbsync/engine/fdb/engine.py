"""The production engine: a thin adapter over the official FoundationDB bindings.

`fdb://` opens the default cluster file, `fdb:///path/to/fdb.cluster` a given one. The keyspace
is the embedded engine's (tuple-encoded keys, tenants as tuple prefixes made by the data
layer), so `fdbsync dump` and `load` move data between the two.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..base import Engine
from ..errors import ErrorCode, FDBError
from ..limits import Limits
from . import client
from .bridge import Bridge
from .transaction import FdbTransaction
from .watches import WatchSet


class FdbEngine(Engine):
    """The `fdb://[cluster file]` engine."""

    def __init__(
        self,
        cluster_file: str | None = None,
        *,
        limits: Limits | None = None,
        url: str | None = None,
    ) -> None:
        self.cluster_file = cluster_file
        self.url = url or f"fdb://{cluster_file or ''}"
        self.limits = limits or Limits()
        client.check_limits(self.limits)
        self.watches = WatchSet(self.limits.max_watches)
        self._database: Any = None
        self._bridge: Bridge | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Load the client (first engine in the process) and open a database handle.

        Fails with FDBError naming what to install when libfdb_c is missing. Opening does not
        wait for the cluster: transactions do, up to their timeout.
        """
        async with self._lifecycle():
            if self._database is not None:
                return
            # Loading a shared library and reading the cluster file touch the disk.
            fdb, database = await asyncio.to_thread(self._connect)
            self._bridge = Bridge(fdb.FDBError)
            self._database = database

    def _connect(self) -> tuple[Any, Any]:
        fdb = client.load()
        return fdb, client.open_database(fdb, self.cluster_file, self.limits)

    async def close(self) -> None:
        """Fail pending watches (1101) and let the database handle go."""
        async with self._lifecycle():
            if self._database is None:
                return
            self._database = None
            self.watches.close(FDBError(ErrorCode.OPERATION_CANCELLED, "engine closed"))

    @property
    def is_open(self) -> bool:
        return self._database is not None

    def check_open(self) -> None:
        if self._database is None:
            raise FDBError(ErrorCode.CLIENT_INVALID_OPERATION, f"engine {self.url} is not open")

    def database(self) -> Any:
        """The bindings' Database of this engine (FDBError when it is not open)."""
        self.check_open()
        return self._database

    @property
    def bridge(self) -> Bridge:
        if self._bridge is None:
            raise FDBError(ErrorCode.CLIENT_INVALID_OPERATION, f"engine {self.url} is not open")
        return self._bridge

    def create_transaction(self) -> FdbTransaction:
        database = self.database()
        return FdbTransaction(self, self.bridge.call(database.create_transaction))

    @property
    def pending_watches(self) -> int:
        return self.watches.pending
