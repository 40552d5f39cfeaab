"""The live stream's wire format, shared by the server and `fdbsync.testing`.

A page asks for its live stream by requesting its own URL with the `LIVE_PARAM` query
parameter (its value is the page's first-render token, or anything else on a reconnect
the server cannot recognise). The stream sends only unnamed SSE messages; each message's
data is a run of out-of-band fragments, one top-level element per fragment name:

    <ul id="fdbsync-people" hx-swap-oob="true">...</ul><p id="fdbsync-count" ...>...</p>

htmx 4 (`hx-sse:connect`) swaps unnamed messages, and htmx 2 + htmx-ext-sse swaps them
through `sse-swap="message"`; both apply `hx-swap-oob` elements by id. A message carries
every fragment a change produced, so a page applies one snapshot at a time.
"""

from __future__ import annotations

import re

__all__ = [
    "ELEMENT_ID_PREFIX",
    "LIVE_PARAM",
    "check_name",
    "element_id",
]

#: The query parameter that marks a request for a page's live stream. Both htmx versions
#: can send it (it is part of the URL), and no proxy or extension adds it on its own.
LIVE_PARAM = "fdbsync-live"

#: Element ids of live fragments: `fdbsync-<name>`.
ELEMENT_ID_PREFIX = "fdbsync-"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")


def check_name(name: str) -> str:
    """`name` if it can be a fragment name (a letter, then letters, digits, _ or -)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} cannot name a live fragment: use a letter, then letters, digits, "
            "'_' or '-' (it becomes part of an element id)"
        )
    return name


def element_id(name: str) -> str:
    """The id of the element that shows fragment `name` on the page."""
    return ELEMENT_ID_PREFIX + check_name(name)
