"""Errors of the web layer."""

from __future__ import annotations

__all__ = ["FragmentError", "LiveSyncError"]


class LiveSyncError(Exception):
    """A live route is set up wrongly (the message says how to fix it)."""


class FragmentError(LiveSyncError):
    """A label's fragment cannot be rendered as a live fragment: a missing block, or HTML
    without the element `live.target(name)` marks."""
