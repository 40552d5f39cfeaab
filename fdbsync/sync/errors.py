"""The sync layer's errors."""

from __future__ import annotations

from ..data.errors import DataError


class SyncError(DataError):
    """A session cannot go on: a re-read or a callback failed (the cause is chained)."""

    def __init__(self, message: str, label: str | None = None) -> None:
        super().__init__(message)
        self.label = label


class WatchLimitError(SyncError):
    """No more storage watches: the engine's `max_watches` is reached. Sessions already live
    keep working; this one cannot start until others end."""
