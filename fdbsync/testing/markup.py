"""Finding live fragments and the stream URL in HTML, keeping each element's exact source.

Built on `html.parser`, which tokenizes like a browser (quoted attribute values may hold `>`,
script and style bodies are raw text) but builds no tree: the scanner keeps a stack of open
elements itself, knows the void elements, and closes the elements whose end tags HTML lets
a page leave out. Each element is reported with its outer HTML, sliced from the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser

from fdbsync.web.wire import ELEMENT_ID_PREFIX

__all__ = ["Element", "fragments", "scan", "split_fragments", "stream_url"]

#: Elements that never have content or an end tag.
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)

_CLOSES_P = frozenset(
    {"address", "article", "aside", "blockquote", "details", "dialog", "div", "dl", "fieldset"}
    | {"figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header"}
    | {"hgroup", "hr", "main", "menu", "nav", "ol", "p", "pre", "section", "table", "ul"}
)

# A start tag closes these elements when they are the innermost open one (repeatedly): the
# end tags HTML lets a page omit. Simpler than the HTML5 tree builder, and enough for the
# lists, tables and paragraphs server-rendered fragments contain.
_IMPLIED_END: dict[str, frozenset[str]] = {
    **dict.fromkeys(_CLOSES_P, frozenset({"p"})),
    "li": frozenset({"li"}),
    "dt": frozenset({"dt", "dd"}),
    "dd": frozenset({"dt", "dd"}),
    "tr": frozenset({"tr", "td", "th"}),
    "td": frozenset({"td", "th"}),
    "th": frozenset({"td", "th"}),
    "thead": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "tbody": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "tfoot": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "option": frozenset({"option"}),
    "optgroup": frozenset({"option", "optgroup"}),
}

#: Attributes that name a page's stream: htmx 4's and htmx-ext-sse's (htmx 2).
STREAM_ATTRIBUTES = ("hx-sse:connect", "sse-connect")


@dataclass(frozen=True, slots=True)
class Element:
    """One element: its tag, attributes (values unescaped), depth and outer HTML."""

    tag: str
    attrs: dict[str, str | None]
    depth: int
    start: int
    end: int
    html: str


def scan(source: str) -> list[Element]:
    """Every element in `source`, in document order, each with its exact outer HTML."""
    scanner = _Scanner(source)
    scanner.feed(source)
    scanner.close()
    return sorted(scanner.elements, key=lambda element: element.start)


def split_fragments(data: str) -> dict[str, str]:
    """A stream message's fragments, by name: the `fdbsync-<name>` element inside each
    top-level `<template hx type="partial">` (the wire format), or at the top level."""
    elements = scan(data)
    partials = [
        element
        for element in elements
        if element.depth == 0
        and element.tag == "template"
        and element.attrs.get("type") == "partial"
    ]

    def carried(element: Element) -> bool:
        if element.depth == 0:
            return element not in partials
        return element.depth == 1 and any(
            p.start < element.start < p.end
            and p.attrs.get("hx-target") == f"#{element.attrs.get('id')}"
            for p in partials
        )

    return _by_name(element for element in elements if carried(element))


def fragments(page: str) -> dict[str, str]:
    """A page's fragments: its `fdbsync-<name>` elements at any depth, by name."""
    return _by_name(scan(page))


def stream_url(page: str) -> str | None:
    """The first `hx-sse:connect` or `sse-connect` value in `page` (unescaped), if any."""
    for element in scan(page):
        for attribute in STREAM_ATTRIBUTES:
            value = element.attrs.get(attribute)
            if value:
                return value
    return None


def _by_name(elements: Iterable[Element]) -> dict[str, str]:
    found: dict[str, str] = {}
    for element in elements:
        element_id = element.attrs.get("id") or ""
        name = element_id.removeprefix(ELEMENT_ID_PREFIX)
        if not element_id.startswith(ELEMENT_ID_PREFIX) or not name:
            continue
        if name in found:
            # htmx swaps only the first element with an id, so a repeat is a bug to show.
            raise ValueError(
                f"two elements have id={element_id!r} (htmx swaps only the first): "
                f"{_excerpt(found[name])} and {_excerpt(element.html)}"
            )
        found[name] = element.html
    return found


def _excerpt(html: str, limit: int = 80) -> str:
    return repr(html if len(html) <= limit else html[:limit] + "...")


@dataclass(slots=True)
class _Open:
    tag: str
    attrs: dict[str, str | None]
    start: int


class _Scanner(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.elements: list[Element] = []
        self._open: list[_Open] = []
        # getpos() counts lines by "\n" alone; these turn its (line, column) into an offset.
        self._line_starts = [0, *(match.end() for match in re.finditer("\n", source))]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._offset()
        self._close_implied(tag, start)
        if tag in VOID_ELEMENTS:
            self._add(_Open(tag, dict(attrs), start), self._start_tag_end(start))
        else:
            self._open.append(_Open(tag, dict(attrs), start))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # `<x/>`: complete in itself (SVG's <path/>, or XHTML habits).
        start = self._offset()
        self._close_implied(tag, start)
        self._add(_Open(tag, dict(attrs), start), self._start_tag_end(start))

    def handle_endtag(self, tag: str) -> None:
        start = self._offset()
        # html.parser ends an end tag at its first ">".
        close = self.source.find(">", start)
        end = len(self.source) if close < 0 else close + 1
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                # Elements still open inside it left out their end tags: they end here.
                while len(self._open) > index + 1:
                    self._add(self._open.pop(), start)
                self._add(self._open.pop(), end)
                return
        # An end tag with no open element closes nothing.

    def close(self) -> None:
        super().close()
        while self._open:  # unclosed at the end of the input
            self._add(self._open.pop(), len(self.source))

    def _close_implied(self, tag: str, at: int) -> None:
        closes = _IMPLIED_END.get(tag)
        while closes and self._open and self._open[-1].tag in closes:
            self._add(self._open.pop(), at)

    def _add(self, element: _Open, end: int) -> None:
        self.elements.append(
            Element(
                tag=element.tag,
                attrs=element.attrs,
                depth=len(self._open),
                start=element.start,
                end=end,
                html=self.source[element.start : end],
            )
        )

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _start_tag_end(self, start: int) -> int:
        return start + len(self.get_starttag_text() or "")
