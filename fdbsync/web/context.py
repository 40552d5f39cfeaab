"""`live`, the helper templates get: htmx's scripts, the page's stream element, and the
attributes that mark each live fragment, written for the page's htmx version."""

from __future__ import annotations

from typing import Literal

from markupsafe import Markup, escape

from .wire import element_id

__all__ = ["HtmxVersion", "LiveContext"]

HtmxVersion = Literal[2, 4]

_SCRIPTS: dict[int, tuple[str, ...]] = {
    2: ("htmx2/htmx.min.js", "htmx2/sse.min.js"),
    4: ("htmx4/htmx.min.js", "htmx4/hx-sse.min.js"),
}


class LiveContext:
    """`live` in a template. A page render has a `stream_url`; a fragment render for the
    stream has none (`streaming` is true)."""

    def __init__(self, htmx: HtmxVersion, static_url: str, stream_url: str | None) -> None:
        if htmx not in _SCRIPTS:
            raise ValueError(f"htmx must be 2 or 4, not {htmx!r}")
        self.htmx = htmx
        self.static_url = static_url.rstrip("/")
        self.stream_url = stream_url

    @property
    def streaming(self) -> bool:
        """Whether this render is a fragment for the live stream."""
        return self.stream_url is None

    def scripts(self) -> Markup:
        """The `<script>` tags for htmx and its SSE extension (served from static_url)."""
        return Markup("").join(
            Markup('<script src="{}"></script>').format(f"{self.static_url}/{path}")
            for path in _SCRIPTS[self.htmx]
        )

    def stream(self) -> Markup:
        """The hidden element that connects the page to its live stream. It swaps nothing
        itself: each message's partials replace their elements, by id."""
        if self.stream_url is None:
            return Markup("")
        url = escape(self.stream_url)
        if self.htmx == 4:
            return Markup('<div hidden hx-sse:connect="{}" hx-swap="none"></div>').format(url)
        return Markup(
            '<div hidden hx-ext="sse" sse-connect="{}" sse-swap="message" hx-swap="none"></div>'
        ).format(url)

    def id(self, name: str) -> str:
        """The element id of fragment `name` (for `hx-target="#..."` and CSS)."""
        return element_id(name)

    def target(self, name: str) -> Markup:
        """The attributes of the element that shows fragment `name` (its id; the stream
        swaps it by that id)."""
        return Markup('id="{}"').format(element_id(name))
