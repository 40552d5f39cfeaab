"""The sync layer: live sessions whose assigns follow the database, over one watch hub.

Framework-neutral: nothing here knows about FastAPI or htmx (see docs/architecture.md).
"""

from .errors import SyncError, WatchLimitError
from .hub import HubStats, WatchHub, hub_for
from .reads import QueryRead, RecordRead, SharedRead
from .session import Callback, LiveSession, Ready
from .specs import All, Label, Many, One, WatchAction

__all__ = [
    "All",
    "Callback",
    "HubStats",
    "Label",
    "LiveSession",
    "Many",
    "One",
    "QueryRead",
    "Ready",
    "RecordRead",
    "SharedRead",
    "SyncError",
    "WatchAction",
    "WatchHub",
    "WatchLimitError",
    "hub_for",
]
