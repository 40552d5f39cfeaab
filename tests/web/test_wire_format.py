"""The live stream's wire format, applied the way htmx 4 and htmx 2 + htmx-ext-sse apply it.

Raw bytes from a real server are parsed by an SSE parser written here from the HTML standard
(not the one in fdbsync.testing). Each message is parsed as both htmx versions parse a swapped
response, as `<template>` contents (whose parser mode depends on the first element; see
_TreeBuilder, checked against Chromium), and applied to a small DOM built here: every element
carrying `hx-swap-oob="true"` replaces, outerHTML, the page element with its id (the attribute
removed, as both htmx versions remove it); an htmx partial (`<template hx type="partial">`)
would replace its `hx-target`; nothing else is swapped (the stream element says
`hx-swap="none"`). Only unnamed messages are swapped: htmx 4 swaps messages without an `event`
field and dispatches named ones as DOM events; htmx 2 swaps the `message` events
`sse-swap="message"` names. Starting from a page's HTML, the messages must give exactly what a
fresh render of the page shows.

xfail (bug): a message whose first fragment is a `<ul>` loses a later `<tbody>` fragment.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import html
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
from data.models import Person, person
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from fdbsync.data import Repo
from fdbsync.engine import Engine
from fdbsync.sync import LiveSession
from fdbsync.testing import serve
from fdbsync.web import LIVE_PARAM, LiveSync, live_sync

STATIC = Path(__file__).resolve().parents[2] / "static"
WITHIN_S = 10.0

BLOCKS = {
    "people": """{% block people %}<ul {{ live.target("people") }}>
{% for p in people %}  <li>{{ p.name }} <em>{{ p.team }}</em></li>
{% endfor %}</ul>{% endblock %}""",
    "count": """{% block count %}<p {{ live.target("count") }}>{{ people | length }} people</p>\
{% endblock %}""",
    "red": """<table>
<thead><tr><th>Name</th><th>Email</th></tr></thead>
{% block red %}<tbody {{ live.target("red") }}>
{% for p in red %}<tr><td>{{ p.name }}</td><td>{{ p.email }}</td></tr>
{% endfor %}</tbody>{% endblock %}
</table>""",
    "me": """<table><tbody>
<tr><td>a row that never changes</td></tr>
{% block me %}<tr {{ live.target("me") }}>{% if me %}<td>{{ me.name }}</td><td>{{ me.age }}</td>{%
  else %}<td colspan="2">gone</td>{% endif %}</tr>{% endblock %}
<tr><td>another row that never changes</td></tr>
</tbody></table>""",
}


def page_template(*blocks: str) -> str:
    body = "\n".join(BLOCKS[block] for block in blocks)
    return f"""<!doctype html>
<html>
<head><title>wire</title>{{{{ live.scripts() }}}}</head>
<body>
{{{{ live.stream() }}}}
<main>
{body}
</main>
</body>
</html>
"""


#: Pages whose messages each hold one kind of container: a `<ul>` with a `<p>`, a `<tbody>`,
#: a `<tr>`; and one page whose label shows a `<ul>` and a `<tbody>`, so its messages hold both.
TEMPLATES = {
    "list.html": page_template("people", "count"),
    "rows.html": page_template("red"),
    "me.html": page_template("me"),
    "mixed.html": page_template("people", "red", "me"),
}


# -- SSE, as the HTML standard parses it ------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A dispatched event. `event` is the `event` field ("" when absent: htmx 4 swaps only
    those); EventSource dispatches it as `event or "message"` (htmx 2 swaps "message")."""

    data: str
    event: str
    last_event_id: str

    @property
    def swapped_by_htmx4(self) -> bool:
        return self.event == ""

    @property
    def swapped_by_htmx2(self) -> bool:
        return (self.event or "message") == "message"


@dataclass
class SpecParser:
    """An incremental event-stream parser following the standard step by step."""

    events: list[Event] = field(default_factory=list)
    comments: int = 0
    retry: int | None = None  # the reconnection time, once a valid `retry` field set it
    blocks: int = 0  # blank lines seen (each ends an event block, dispatched or not)
    last_event_id: str = ""
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")())
    _buffer: str = ""
    _started: bool = False
    _data: list[str] = field(default_factory=list)
    _event: str = ""

    def feed(self, chunk: bytes) -> None:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self._buffer += text
        while True:
            ends = [i for i in (self._buffer.find("\r"), self._buffer.find("\n")) if i >= 0]
            if not ends:
                return
            at = min(ends)
            if self._buffer[at] == "\r" and at == len(self._buffer) - 1:
                return  # maybe a CRLF cut between two chunks
            width = 2 if self._buffer.startswith("\r\n", at) else 1
            line, self._buffer = self._buffer[:at], self._buffer[at + width :]
            self._line(line)

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            self.comments += 1
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and re.fullmatch("[0-9]+", value):
            self.retry = int(value)

    def _dispatch(self) -> None:
        self.blocks += 1
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return
        self.events.append(Event("\n".join(data), event, self.last_event_id))


def parse_all(raw: bytes, *, chunk: int) -> SpecParser:
    parser = SpecParser()
    for start in range(0, len(raw), chunk):
        parser.feed(raw[start : start + chunk])
    return parser


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_the_sse_parser_here_follows_the_standard(chunk: int) -> None:
    """The parser the wire tests rely on: line ends, multi-line data, comments, retry, ids,
    named events and BOM, fed in chunks cut anywhere (even inside a UTF-8 character)."""
    raw = (
        "\ufeff: a comment\r\n"
        "retry: 250\r\n"
        "\r\n"
        "data: <p id=a>\r\n"
        "data:  two spaces\r"
        "data:no space\n"
        "data\n"
        "\n"
        "event: ping\n"
        "data: named\n"
        "\n"
        "retry: 12x\n"
        "id: 7\n"
        "data: é ü €\r\n"
        "\r\n"
        ": another comment\n"
        "data: never ended by a blank line"
    ).encode()
    parser = parse_all(raw, chunk=chunk)
    assert [event.data for event in parser.events] == [
        "<p id=a>\n two spaces\nno space\n",
        "named",
        "é ü €",
    ]
    assert [event.event for event in parser.events] == ["", "ping", ""]
    assert [event.swapped_by_htmx4 for event in parser.events] == [True, False, True]
    assert [event.swapped_by_htmx2 for event in parser.events] == [True, False, True]
    assert parser.events[2].last_event_id == "7"
    assert parser.retry == 250  # "12x" is not a valid retry
    assert parser.comments == 2
    # An explicit `event: message` is where the two versions differ: never send one.
    explicit = parse_all(b"event: message\ndata: x\n\n", chunk=1).events[0]
    assert explicit.swapped_by_htmx2 and not explicit.swapped_by_htmx4


# -- A small DOM, as an HTML parser builds it for these pages ----------------------------------

VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
    | {"track", "wbr"}
)
_BLOCKS_CLOSING_P = frozenset(
    {"address", "article", "aside", "div", "dl", "footer", "form", "h1", "h2", "h3", "h4"}
    | {"h5", "h6", "header", "main", "nav", "ol", "p", "pre", "section", "table", "ul"}
)
IMPLIED_END: dict[str, frozenset[str]] = {
    **dict.fromkeys(_BLOCKS_CLOSING_P, frozenset({"p"})),
    "li": frozenset({"li"}),
    "tr": frozenset({"tr", "td", "th"}),
    "td": frozenset({"td", "th"}),
    "th": frozenset({"td", "th"}),
    "thead": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "tbody": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
    "tfoot": frozenset({"thead", "tbody", "tfoot", "tr", "td", "th"}),
}


@dataclass(eq=False)
class Node:
    """An element (`tag`), a text node (`text`), or a document/fragment (neither)."""

    tag: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    text: str | None = None

    def elements(self) -> list[tuple[Node, Node]]:
        """(parent, element) for every element below this node, in document order."""
        found: list[tuple[Node, Node]] = []
        for child in self.children:
            if child.tag is not None:
                found.append((self, child))
                found.extend(child.elements())
        return found

    def by_id(self, element_id: str) -> tuple[Node, Node] | None:
        """The first element with this id, as getElementById and `#id` find it."""
        return next(((p, e) for p, e in self.elements() if e.attrs.get("id") == element_id), None)

    def html(self) -> str:
        if self.text is not None:
            return html.escape(self.text, quote=False)
        inner = "".join(child.html() for child in self.children)
        if self.tag is None:
            return inner
        attrs = "".join(f' {name}="{html.escape(value)}"' for name, value in self.attrs.items())
        if self.tag in VOID:
            return f"<{self.tag}{attrs}>"
        return f"<{self.tag}{attrs}>{inner}</{self.tag}>"


#: Elements of a table's structure; which of them a parser keeps depends on its context.
TABLE_PARTS = frozenset({"caption", "col", "colgroup", "tbody", "thead", "tfoot", "tr", "td", "th"})
SECTIONS = frozenset({"caption", "col", "colgroup", "tbody", "thead", "tfoot"})


class _TreeBuilder(HTMLParser):
    """Builds a Node tree. With `template=True` it parses as the contents of a `<template>`,
    which is how both htmx versions parse a swapped response (htmx 4: `#makeFragment` parses
    `<template>` + text + `</template>`; htmx 2: `makeFragment` wraps the text in
    `<body><template>`). There the HTML parser picks its insertion mode from the first start
    tag ("in template" mode): a message that starts with anything but a table part is parsed
    "in body", where start and end tags of table parts are parse errors and are ignored (their
    text stays); one that starts with `<tr>`, `<td>` or `<th>` ignores a later `<tbody>`,
    `<thead>`, `<tfoot>`, `<caption>` or `<col(group)>` while none is open. A `<template>`
    element's contents are a context of their own, with their own first start tag. Those are
    the rules modelled here; test_browser_htmx checks Chromium parses these cases the same
    way."""

    def __init__(self, *, template: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("template") if template else Node()
        self.stack = [self.root]
        #: For each open template context: "body", "section", "row", or None before its
        #: first start tag.
        self.modes: list[str | None] = [None] if template else []

    def _ignored(self, tag: str) -> bool:
        if not self.modes or tag == "template":
            return False
        mode = self.modes[-1]
        if mode is None:
            mode = "body" if tag not in TABLE_PARTS else "section"
            if tag in {"tr", "td", "th"}:
                mode = "row"
            self.modes[-1] = mode
        if mode == "body":
            return tag in TABLE_PARTS
        if mode == "row" and tag in SECTIONS:
            context = max(i for i, node in enumerate(self.stack) if node.tag == "template")
            return not any(node.tag in SECTIONS for node in self.stack[context + 1 :])
        return False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._ignored(tag):
            return
        closes = IMPLIED_END.get(tag, frozenset())
        while len(self.stack) > 1 and self.stack[-1].tag in closes:
            self.stack.pop()
        element = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)
        if tag == "template":
            self.modes.append(None)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        depth = len(self.stack)
        self.handle_starttag(tag, attrs)
        if len(self.stack) > depth:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        # An end tag with no open element of its name (such as one whose start tag was
        # ignored) is ignored.
        if self.modes and tag in TABLE_PARTS and self.modes[-1] == "body":
            return
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                if tag == "template":
                    self.modes.pop()
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        siblings = self.stack[-1].children
        if siblings and siblings[-1].text is not None:
            siblings[-1].text += data
        else:
            siblings.append(Node(text=data))


def parse_html(source: str, *, template: bool = False) -> Node:
    """A document, or with `template` a fragment parsed as template contents; line ends are
    normalised first, as the HTML input stream does."""
    builder = _TreeBuilder(template=template)
    builder.feed(source.replace("\r\n", "\n").replace("\r", "\n"))
    builder.close()
    root = builder.root
    return Node(children=root.children) if template else root


def oob(name: str, tag: str, inner: str) -> str:
    return f'<{tag} id="fdbsync-{name}" hx-swap-oob="true">{inner}</{tag}>'


UL, P = oob("a", "ul", "<li>1</li>"), oob("b", "p", "2")
TBODY, TR = oob("t", "tbody", "<tr><td>1</td></tr>"), oob("r", "tr", "<td>2</td>")
#: Messages, and the ids of the out-of-band elements a browser's parser keeps when it parses
#: them as template contents (test_browser_htmx checks these against Chromium).
TEMPLATE_CASES: list[tuple[str, list[str]]] = [
    (f"{UL}\n{P}", ["fdbsync-a", "fdbsync-b"]),
    (TBODY, ["fdbsync-t"]),
    (TR, ["fdbsync-r"]),
    (f"{TBODY}\n{UL}\n{P}", ["fdbsync-t", "fdbsync-a", "fdbsync-b"]),
    (f"{TBODY}\n{TR}", ["fdbsync-t", "fdbsync-r"]),
    (f"{UL}\n{TBODY}", ["fdbsync-a"]),  # the <tbody> and its <tr>/<td> tags are dropped
    (f"{P}\n{TR}", ["fdbsync-b"]),
    (f"{TR}\n{TBODY}", ["fdbsync-r"]),  # the <tbody> tag is dropped
]


def oob_ids(data: str) -> list[str]:
    """The ids of the out-of-band elements in `data` parsed as template contents."""
    fragment = parse_html(data, template=True)
    return [e.attrs.get("id", "") for _, e in fragment.elements() if "hx-swap-oob" in e.attrs]


@pytest.mark.parametrize(("data", "kept"), TEMPLATE_CASES)
def test_messages_parse_as_template_contents(data: str, kept: list[str]) -> None:
    assert oob_ids(data) == kept
    # Text is never lost, even where tags are.
    assert "".join(n.text or "" for n in all_nodes(parse_html(data, template=True))) == "".join(
        re.findall(r">([^<]*)<", data)
    )


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM}: run `make browser` (installs Debian's chromium)",
)
async def test_chromium_parses_messages_as_modelled_here() -> None:
    """The template-contents parsing modelled above, checked against a real browser."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            for data, kept in TEMPLATE_CASES:
                found = await page.evaluate(
                    """(data) => {
                        const doc = new DOMParser().parseFromString(
                            '<template>' + data + '</template>', 'text/html');
                        const content = doc.querySelector('template').content;
                        return [...content.querySelectorAll('[hx-swap-oob]')].map((e) => e.id);
                    }""",
                    data,
                )
                assert found == kept == oob_ids(data), data
        finally:
            await browser.close()


def all_nodes(node: Node) -> list[Node]:
    return [node, *(n for child in node.children for n in all_nodes(child))]


def partial_target(element: Node) -> str | None:
    """The id an htmx partial (`<template hx type="partial" hx-target="#id"
    hx-swap="outerHTML">`) replaces, if `element` is one."""
    if element.tag != "template" or "hx" not in element.attrs:
        return None
    assert element.attrs.get("type") == "partial", element.attrs
    assert element.attrs.get("hx-swap") == "outerHTML", element.attrs
    target = element.attrs.get("hx-target", "")
    assert target.startswith("#"), element.attrs
    return target[1:]


def check_wire_format(data: str) -> list[str]:
    """The wire format's promise about a message, read from its source: a run of top-level
    elements, one per fragment, each with its own `fdbsync-` id and nothing else, as
    out-of-band elements (`hx-swap-oob="true"`) or as htmx partials replacing that id. The
    ids."""
    source = parse_html(data)
    ids = []
    for child in source.children:
        if child.tag is None:
            assert (child.text or "").strip() == "", f"text between fragments: {child.text!r}"
            continue
        target = partial_target(child)
        if target is None:
            assert child.attrs.get("hx-swap-oob") == "true", child.html()[:200]
            ids.append(child.attrs.get("id", ""))
        else:
            inside = [c for c in child.children if c.tag is not None]
            assert [c.attrs.get("id") for c in inside] == [target], child.html()[:200]
            ids.append(target)
    nested = [e for _, e in source.elements() if "hx-swap-oob" in e.attrs]
    assert len(nested) <= len(ids), f"an out-of-band element inside another: {data[:300]!r}"
    assert ids and all(i.startswith("fdbsync-") for i in ids), ids
    assert len(ids) == len(set(ids)), f"an id twice in one message: {ids}"
    return ids


def apply_message(page: Node, data: str) -> list[str]:
    """Swap one message into `page` as htmx does, and return the ids swapped: parse it as
    template contents; replace (outerHTML) the page element with the id of every element
    marked `hx-swap-oob="true"` (at any depth: htmx 4 takes every match of `[hx-swap-oob]`,
    htmx 2 nested ones too under its default allowNestedOobSwaps), the attribute removed;
    and replace the target of every htmx partial with the partial's contents. Nothing else
    is swapped (`hx-swap="none"`); a message with no data swaps nothing."""
    if data.strip() == "":
        return []
    check_wire_format(data)
    fragment = parse_html(data, template=True)
    swapped = []
    for _, element in fragment.elements():
        target_id = partial_target(element)
        if target_id is not None:
            replacement = element.children
        elif "hx-swap-oob" in element.attrs:
            assert element.attrs.pop("hx-swap-oob") == "true"
            target_id = element.attrs.get("id", "")
            replacement = [element]
        else:
            continue
        found = page.by_id(target_id)
        assert found is not None, f"no element on the page has id={target_id!r}"
        parent, target = found
        at = parent.children.index(target)
        parent.children[at : at + 1] = replacement
        swapped.append(target_id)
    return swapped


def live_elements(page: Node) -> dict[str, str]:
    """The page's `fdbsync-*` elements, serialised."""
    found: dict[str, str] = {}
    for _, element in page.elements():
        element_id = element.attrs.get("id", "")
        if element_id.startswith("fdbsync-"):
            assert element_id not in found, f"two elements with id={element_id!r}"
            found[element_id] = element.html()
    return found


def without_stream_url(page: Node) -> str:
    """The whole page, its stream element's URL (which holds a one-use token) left out."""
    for _, element in page.elements():
        for name in ("hx-sse:connect", "sse-connect"):
            if name in element.attrs:
                element.attrs[name] = "<stream>"
    return page.html()


# -- The app --------------------------------------------------------------------------------


@pytest.fixture
async def repo(engine: Engine) -> Repo:
    single = Repo(engine, models=[Person])
    await single.build_indexes(Person)
    return single


def make_app(repo: Repo, htmx: int, me_id: str) -> tuple[FastAPI, LiveSync]:
    env = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True)
    live = LiveSync(
        repo,
        Jinja2Templates(env=env),
        htmx=htmx,  # type: ignore[arg-type]
        static_url="/static/vendor",
        ping_interval=0.2,
        reconnect_delay=1.5,
    )
    app = FastAPI(lifespan=live.lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/list")
    @live_sync("list.html", fragments={"people": ["people", "count"]})
    async def people(session: LiveSession) -> None:
        await session.sync_all("people", Person)

    @app.get("/rows")
    @live_sync("rows.html")
    async def rows(session: LiveSession) -> None:
        await session.sync_all_by("red", Person, {"team": "red"})

    @app.get("/me")
    @live_sync("me.html")
    async def me(session: LiveSession) -> None:
        await session.sync_one("me", Person, me_id)

    @app.get("/mixed")
    @live_sync("mixed.html", fragments={"people": ["people", "red"]})
    async def mixed(session: LiveSession) -> None:
        await session.sync_all("people", Person)
        await session.sync_all_by("red", Person, {"team": "red"})
        await session.sync_one("me", Person, me_id)

    return app, live


class RawStream:
    """A stream read as raw bytes, parsed here, with each new event handed on in order."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks
        self.parser = SpecParser()
        self.raw = b""
        self.taken = 0

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(WITHIN_S):
                while not condition():
                    chunk = await anext(self.chunks)
                    self.raw += chunk
                    self.parser.feed(chunk)
        except TimeoutError:
            raise AssertionError(
                f"{what} never came; the stream sent {self.raw[-2000:]!r}"
            ) from None

    async def blocks(self, count: int, what: str) -> None:
        await self.until(lambda: self.parser.blocks >= count, what)

    async def next_data(self, what: str) -> Event:
        """The next event that has data (the first, data-less event of a connect is passed
        over: it swaps nothing)."""

        def found() -> bool:
            return any(e.data.strip() for e in self.parser.events[self.taken :])

        await self.until(found, what)
        while True:
            (event,) = swapped_events(self.parser.events[self.taken : self.taken + 1])
            self.taken += 1
            if event.data.strip():
                return event

    def new_events(self) -> list[Event]:
        events = self.parser.events[self.taken :]
        self.taken = len(self.parser.events)
        return events


async def fresh(http: httpx.AsyncClient, path: str) -> Node:
    response = await http.get(path)
    assert response.status_code == 200
    return parse_html(response.text)


def swapped_events(events: list[Event]) -> list[Event]:
    """The events both htmx versions swap; the stream sends no other kind."""
    for event in events:
        assert event.event == "", f"the live stream sent a named event: {event}"
        assert event.swapped_by_htmx4 and event.swapped_by_htmx2
    return events


def live_url(page_html: str) -> str:
    (url,) = re.findall(r'(?:hx-sse:connect|sse-connect)="([^"]+)"', page_html)
    return html.unescape(url)


class Followed:
    """A page, as a browser shows it, kept current by applying its stream's messages."""

    def __init__(self, http: httpx.AsyncClient, path: str, page_html: str) -> None:
        self.http = http
        self.path = path
        self.page = parse_html(page_html)
        self.stale = parse_html(page_html)  # the first render, for a reconnect
        self.url = live_url(page_html)
        self.stream: RawStream

    async def connect(self, stack: contextlib.AsyncExitStack) -> httpx.Response:
        response = await stack.enter_async_context(
            self.http.stream("GET", self.url, headers={"Accept": "text/event-stream"})
        )
        self.stream = RawStream(response.aiter_raw())
        return response

    async def settle(self, what: str) -> list[str]:
        """Apply the stream's messages until the page equals a fresh render; the ids
        swapped."""
        target = await fresh(self.http, self.path)
        swapped: list[str] = []

        def caught_up() -> bool:
            for event in swapped_events(self.stream.new_events()):
                swapped.extend(apply_message(self.page, event.data))
            return live_elements(self.page) == live_elements(target)

        await self.stream.until(caught_up, f"{self.path}: {what}")
        assert without_stream_url(self.page) == without_stream_url(target)
        return swapped


# -- The tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [4, 2])
async def test_page_markup_names_the_stream_for_each_htmx_version(repo: Repo, htmx: int) -> None:
    ada = await repo.insert(person("ada"))
    app, _ = make_app(repo, htmx, ada.id)
    async with serve(app) as server, httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/mixed")
        assert response.status_code == 200
        page = parse_html(response.text)
        scripts = [e.attrs.get("src") for _, e in page.elements() if e.tag == "script"]
        expected = {
            4: ["/static/vendor/htmx4/htmx.min.js", "/static/vendor/htmx4/hx-sse.min.js"],
            2: ["/static/vendor/htmx2/htmx.min.js", "/static/vendor/htmx2/sse.min.js"],
        }[htmx]
        assert scripts == expected  # htmx first, then its SSE extension
        for src in scripts:
            assert src is not None
            served = await http.get(src)
            assert served.status_code == 200 and len(served.content) > 1000, src

        streams = [
            e for _, e in page.elements() if "hx-sse:connect" in e.attrs or "sse-connect" in e.attrs
        ]
        assert len(streams) == 1
        element = streams[0]
        assert "hidden" in element.attrs
        assert element.attrs.get("hx-swap") == "none"
        if htmx == 4:
            url = element.attrs["hx-sse:connect"]
            assert "sse-connect" not in element.attrs and "hx-ext" not in element.attrs
            assert "sse-swap" not in element.attrs  # removed in htmx 4 (it warns)
        else:
            url = element.attrs["sse-connect"]
            assert element.attrs.get("hx-ext") == "sse"
            assert element.attrs.get("sse-swap") == "message"
            assert "hx-sse:connect" not in element.attrs
        stream_url = httpx.URL(url)
        assert stream_url.path == "/mixed"
        assert stream_url.params.get(LIVE_PARAM)

        # Each live element is on the page once, marked with its id, not out of band.
        elements = live_elements(page)
        assert set(elements) == {"fdbsync-people", "fdbsync-red", "fdbsync-me"}
        assert "hx-swap-oob" not in response.text


@pytest.mark.parametrize("htmx", [4, 2])
async def test_stream_messages_bring_pages_to_a_fresh_render(repo: Repo, htmx: int) -> None:
    """A `<ul>` with a `<p>`, a `<tbody>` and a `<tr>`, each on its own page, follow inserts,
    updates and deletes; a reconnect brings a stale first render up to date."""
    ada = await repo.insert(person("ada", age=36))
    await repo.insert(person("bob", team="blue"))
    app, live = make_app(repo, htmx, ada.id)
    async with (
        serve(app) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        pages = {}
        for path in ("/list", "/rows", "/me"):
            pages[path] = Followed(http, path, (await http.get(path)).text)
        for followed in pages.values():
            response = await followed.connect(stack)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-accel-buffering"] == "no"
            # First connect: the server knows what the page shows, so its first event block
            # only sets the reconnection time; nothing is swapped.
            stream = followed.stream
            await stream.blocks(1, "the first event block")
            assert stream.parser.retry == 1500
            for event in swapped_events(stream.new_events()):
                assert apply_message(followed.page, event.data) == []
        assert live.stats().streams == 3

        # An insert changes the list, the count and the `<tbody>`; the `<tr>` stays.
        await repo.insert(person("<script>alert('x')</script> & \"quoted\"\r\nsecond line", age=1))
        assert await pages["/list"].settle("the insert") == ["fdbsync-people", "fdbsync-count"]
        assert await pages["/rows"].settle("the insert") == ["fdbsync-red"]
        assert await pages["/me"].settle("the insert") == []
        shown = pages["/rows"].page.html()
        assert "&lt;script&gt;alert" in shown and "<script>alert" not in shown

        # An update of the record the `<tr>` shows.
        ada = await repo.update(ada, {"name": "ada lovelace", "age": 37})
        assert "fdbsync-people" in await pages["/list"].settle("the update")
        assert await pages["/rows"].settle("the update") == ["fdbsync-red"]
        assert await pages["/me"].settle("the update") == ["fdbsync-me"]
        assert "ada lovelace" in live_elements(pages["/me"].page)["fdbsync-me"]

        # A delete: the `<tr>` shows "gone", the `<tbody>` and `<ul>` shrink.
        await repo.delete(ada)
        for followed in pages.values():
            assert await followed.settle("the delete")
        assert "gone" in live_elements(pages["/me"].page)["fdbsync-me"]
        assert "ada" not in live_elements(pages["/rows"].page)["fdbsync-red"]

        # Keep-alive comments come too, and are ignored.
        stream = pages["/list"].stream
        await stream.until(lambda: stream.parser.comments >= 1, "a keep-alive comment")
        assert swapped_events(stream.new_events()) == []

    # A reconnect (the token is used up, as after any reconnect or restart) sends every
    # fragment in one message; the stale first render then equals a fresh one.
    async with (
        serve(app) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        for path, followed in pages.items():
            followed.http = http
            followed.page = followed.stale
            await followed.connect(stack)
            event = await followed.stream.next_data("the reconnect's message")
            assert followed.stream.parser.retry == 1500
            swapped = apply_message(followed.page, event.data)
            expected = {"/list": 2, "/rows": 1, "/me": 1}[path]
            assert len(swapped) == expected
            assert await followed.settle("the reconnect") == []  # already current


@pytest.mark.parametrize("htmx", [4, 2])
async def test_a_message_with_a_ul_and_a_tbody_swaps_both(repo: Repo, htmx: int) -> None:
    ada = await repo.insert(person("ada", age=36))
    app, _ = make_app(repo, htmx, ada.id)
    async with (
        serve(app) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        followed = Followed(http, "/mixed", (await http.get("/mixed")).text)
        await followed.connect(stack)
        stream = followed.stream
        await stream.blocks(1, "the first event block")
        await repo.insert(person("grace"))
        # One commit, one message: the label's `<ul>`, then its `<tbody>`.
        event = await stream.next_data("the insert's message")
        assert check_wire_format(event.data) == ["fdbsync-people", "fdbsync-red"]
        assert apply_message(followed.page, event.data) == ["fdbsync-people", "fdbsync-red"]
        target = live_elements(await fresh(http, "/mixed"))
        assert live_elements(followed.page)["fdbsync-people"] == target["fdbsync-people"]
        assert live_elements(followed.page)["fdbsync-red"] == target["fdbsync-red"]
