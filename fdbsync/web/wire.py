"""The live stream's wire format, shared by the server and `fdbsync.testing`.

A page asks for its live stream by requesting its own URL with the `LIVE_PARAM` query
parameter (its value is the page's first-render token, or anything else on a reconnect
the server cannot recognise). The stream sends only unnamed SSE messages; each message's
data is a run of htmx partials, one per fragment, each replacing the element with its id:

    <template hx type="partial" hx-target="#fdbsync-people" hx-swap="outerHTML">
      <ul id="fdbsync-people">...</ul>
    </template>

htmx 4 (`hx-sse:connect`) swaps unnamed messages, and htmx 2 + htmx-ext-sse swaps them
through `sse-swap="message"`; both apply `<template hx type="partial">` elements. Each
template's content is parsed on its own, so a `<tbody>` or `<tr>` fragment survives next to
a `<ul>` one (bare out-of-band elements would be parsed together, and table parts dropped).
A message carries every fragment a change produced, so a page applies one snapshot at a
time.
"""

from __future__ import annotations

import re

__all__ = [
    "ELEMENT_ID_PREFIX",
    "LIVE_PARAM",
    "check_name",
    "element_id",
    "partial",
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


def partial(name: str, html: str) -> str:
    """Fragment `name` as it travels: a partial that replaces the element with its id."""
    return (
        f'<template hx type="partial" hx-target="#{element_id(name)}" hx-swap="outerHTML">'
        f"{html}</template>"
    )
