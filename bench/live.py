"""Live pages against a bare broadcast and polling: N stream clients on one uvicorn worker.

    .venv/bin/python bench/live.py                  # N = 100, 1,000, 8,000 (about 8 minutes)
    .venv/bin/python bench/live.py --quick          # smoke run: tiny N, short windows
    .venv/bin/python bench/live.py --sizes 1000 --poll-sizes 1000 --idle 10
    .venv/bin/python bench/live.py --profile live   # cProfile of one push to 1,000 live pages
    .venv/bin/python bench/live.py --profile floor  # ... of one broadcast to 1,000 floor clients
    .venv/bin/python bench/live.py --profile idle   # ... of 1,000 idle live pages for --idle s
    .venv/bin/python bench/live.py --profile memory # tracemalloc: what 1,000 connections hold

Every scenario starts a fresh server process: one uvicorn worker (uvloop, httptools, as
`uvicorn app:app` picks them) on the embedded engine, a fresh SQLite file in a temporary
directory holding 20 records of a model with `SchemaMetadata()`. It serves

- the live page: `@live_sync` route `/items` that `sync_all`s the 20 records; its message
  (one htmx partial, `<template hx type="partial" hx-target="#fdbsync-items" ...>` around a
  `<ul id="fdbsync-items">` of 20 `<li>`) is about `--fragment-bytes`;
- the floor: `/floor`, a bare sse-starlette `EventSourceResponse` (same ping interval, send
  timeout and `retry` as the live stream) that sends the fragment, pre-rendered, on connect,
  and again to every connected client when the benchmark triggers a broadcast: one
  `asyncio.Event` all clients wait on; no database, no rendering; the same message bytes;
- polling: `/poll`, a plain route that reads the 20 records (one transaction, no watch) and
  renders the same template block, as `hx-get="/poll" hx-trigger="every 2s"
  hx-swap="outerHTML"` would fetch; and `/items` itself, the live route's full page without
  the live marker (one read, every fragment rendered and its digest remembered for a first
  connect, then the whole template), as `hx-get="/items" hx-select="#fdbsync-items"` would
  fetch. The fragment route is the cheaper of the two for the server, so the goal is judged
  against it (`--poll fragment|page|both`);
- `/bench/...`: the write (`repo.update` of the first record, answering the monotonic time
  of the call and of its return, the commit), the floor's trigger, counters and cProfile.

The clients run in this process (the controller), on raw asyncio sockets (uvloop when
installed) with a minimal HTTP/1.1 + chunked + SSE parser, and connect in batches of
`--batch` with `--pause` between batches, each batch waiting until every connection has its
initial state (the live stream's first message carries every fragment: the clients connect
with an unknown first-render token, as a reconnect does). One client process: the server
uses at most one core of the two, and a second client process would take the other core's
time from the server; the client's CPU per write and its lag behind the server's own send
times are reported so it can be seen not to be the bottleneck.

Push latency: from the write's commit (the return of `repo.update`, `time.monotonic()` in the
server: CLOCK_MONOTONIC, system-wide on Linux, so comparable across the two processes) until
each client has parsed the complete SSE message holding the new fragment; for the floor, from
the moment the trigger sets the event. p50, p99 and max over clients, then the median of each
over `--writes` writes, each waiting for the previous one to reach every client. The server's
own view is "server wrote": when each message's send returned (uvicorn handed it to the
kernel), from `LiveSync.push_observers` and the floor's generator.

The server collects garbage (`gc.collect()`) once the clients are connected, so that the
set-up's garbage is not collected during a write; its collector's pauses during each write
(`gc.callbacks`) and the fragments rendered per write (`LiveSync.stats().renders`) are reported.

Idle server: CPU (utime + stime of /proc/<pid>/stat, all threads; per thread too) over `--idle`
seconds with the N connections open and nothing changing, and RSS (VmRSS) before the first
connection and after the last (plus `--settle` seconds): KB per connection.

Polling: the same N clients fetch `/poll` every 2 seconds on one keep-alive connection each,
staggered evenly, for `--poll-window` seconds (a client whose response comes late sends its
next request at once): server CPU over the window, response times, and staleness, from each
write's commit to each client's first response showing it (a write every 3 seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import os
import pstats
import re
import resource
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates
from measure import table
from sse_starlette import EventSourceResponse, ServerSentEvent

from fdbsync.data import Model, Query, Repo, SchemaMetadata
from fdbsync.engine import create_engine
from fdbsync.sync import LiveSession, hub_for
from fdbsync.web import LiveSync, live_sync
from fdbsync.web.context import LiveContext
from fdbsync.web.wire import partial

SIZES = (100, 1_000, 8_000)
POLL_SIZES = (100, 1_000)
QUICK_SIZES = (20, 60)
COLLECTION = 20  # records on the live page
FRAGMENT_BYTES = 2_000
POLL_INTERVAL = 2.0  # seconds, as hx-trigger="every 2s"
WRITE_EVERY = 3.0  # seconds between writes while polling
WRITE_TIMEOUT = 120.0  # seconds a write may take to reach every client
GOAL_RATIO = 2.0  # live p99 at most 2x the floor's
GOAL_P99_MS_1000 = 100.0
GOAL_CPU_RATIO = 100.0
GOAL_KB = 20.0
HOST = "127.0.0.1"
MARK = re.compile(rb"mark-(\d{6})")


def marker(k: int) -> str:
    """What write `k` puts in the first record's name (same width as the seeded name)."""
    return f"mark-{k:06d}"


def item_id(i: int) -> str:
    return f"item-{i:02d}"


def raise_nofile(needed: int = 0) -> int:
    """Raise the open-file soft limit to the hard limit; the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if needed > hard:
        raise SystemExit(f"{needed:,} connections need more open files than the limit ({hard:,})")
    return hard


def use_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# -- the server process ---------------------------------------------------------------------
TEMPLATE = (
    "<!doctype html>\n<html><head><title>Items</title>{{ live.scripts() }}</head><body>\n"
    "{{ live.stream() }}\n"
    '{% block items %}<ul {{ live.target("items") }}>{% for item in items %}'
    '<li data-id="{{ item.id }}" data-n="{{ item.n }}">{{ item.name }}</li>'
    "{% endfor %}</ul>{% endblock %}\n</body></html>\n"
)


def serve(workdir: Path, port: int, fragment_bytes: int, engine_query: str) -> None:
    """Run the benchmark's app in one uvicorn worker until SIGTERM. With the environment's
    FDBSYNC_BENCH_TRACEMALLOC set, under tracemalloc (for `--profile memory`)."""
    raise_nofile()
    if os.environ.get("FDBSYNC_BENCH_TRACEMALLOC"):
        tracemalloc.start()

    class Item(Model, source="items", indexes=[SchemaMetadata()]):
        id: str
        name: str
        n: int

    query: Query[Item] = Query(Item, limit=COLLECTION)
    (workdir / "templates").mkdir(exist_ok=True)
    (workdir / "templates" / "page.html").write_text(TEMPLATE)
    templates = Jinja2Templates(directory=workdir / "templates")
    page = templates.get_template("page.html")
    url = f"sqlite:///{workdir / 'live.db'}"
    engine = create_engine(f"{url}?{engine_query}" if engine_query else url)
    repo = Repo(engine)
    live = LiveSync(repo, templates)

    def render(items: Sequence[Any], live_context: LiveContext) -> str:
        return "".join(
            page.blocks["items"](page.new_context({"items": items, "live": live_context}))
        )

    streaming = LiveContext(4, live.static_url, None)  # what the live stream's fragments use
    polling = LiveContext(4, live.static_url, "/poll")  # a plain render: the id, no oob

    def records(pad: int, first: str) -> list[Item]:
        return [
            Item(id=item_id(i), name=(first if i == 0 else f"item-{i:06d}") + " " + "x" * pad, n=0)
            for i in range(COLLECTION)
        ]

    base = len(partial("items", render(records(0, marker(0)), streaming)))
    pad = max(0, (fragment_bytes - base) // COLLECTION)
    # The floor's pre-rendered message: what the live stream sends for the same records.
    fragment = partial("items", render(records(pad, marker(0)), streaming))

    pushed: list[float] = []  # when each live push was written (LiveSync.push_observers)
    pauses = {"ms": 0.0, "full": 0, "started": 0.0}  # the garbage collector's

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            pauses["started"] = time.perf_counter()
            return
        pauses["ms"] += (time.perf_counter() - pauses["started"]) * 1000
        pauses["full"] += info["generation"] == 2

    gc.callbacks.append(on_gc)
    live.push_observers.append(lambda _latency: pushed.append(time.monotonic()))

    class Floor:
        """One payload broadcast to every connected client through one asyncio.Event."""

        def __init__(self, payload: str) -> None:
            self.payload = payload
            self.version = 0
            self.changed = asyncio.Event()
            self.clients = 0
            self.written: list[float] = []

        def publish(self, payload: str) -> None:
            self.payload = payload
            self.version += 1
            changed, self.changed = self.changed, asyncio.Event()
            changed.set()

        async def events(self) -> AsyncIterator[ServerSentEvent]:
            self.clients += 1
            try:
                yield ServerSentEvent(self.payload, retry=live.reconnect_ms())
                seen = self.version
                while True:
                    changed = self.changed
                    if self.version == seen:
                        await changed.wait()
                    seen = self.version
                    yield ServerSentEvent(self.payload)
                    self.written.append(time.monotonic())
            finally:
                self.clients -= 1

    floor = Floor(fragment)
    profiler: list[cProfile.Profile] = []
    snapshots: list[tracemalloc.Snapshot] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with live.lifespan(app):
            await repo.insert_all(records(pad, "item-000000"))
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/items")
    @live_sync("page.html")
    async def items(session: LiveSession) -> None:
        await session.sync_all("items", query)

    @app.get("/poll")
    async def poll() -> HTMLResponse:
        return HTMLResponse(render(await repo.all(query), polling))

    @app.get("/floor")
    async def floor_stream() -> EventSourceResponse:
        return EventSourceResponse(
            floor.events(),
            ping=live.ping_interval,
            send_timeout=live.send_timeout,
            headers={"Cache-Control": "no-store"},
        )

    @app.post("/bench/write")
    async def write(k: int) -> dict[str, float]:
        record = await repo.get(Item, item_id(0))
        assert record is not None
        pushed.clear()
        called = time.monotonic()
        await repo.update(record, {"name": marker(k) + " " + "x" * pad})
        return {"called": called, "committed": time.monotonic()}

    @app.post("/bench/broadcast")
    async def broadcast(k: int) -> dict[str, float]:
        payload = fragment.replace(marker(0), marker(k), 1)
        floor.written.clear()
        at = time.monotonic()
        floor.publish(payload)
        return {"called": at, "committed": at}

    @app.get("/bench/stats")
    async def stats() -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "fragment_bytes": len(fragment),
            "live": asdict(live.stats()),
            "hub": asdict(hub_for(engine).stats()),
            "floor_clients": floor.clients,
            "pushed": pushed,
            "broadcast": floor.written,
            "threads": {str(t.native_id): t.name for t in threading.enumerate()},
            "gc_ms": pauses["ms"],
            "gc_full": pauses["full"],
        }

    @app.post("/bench/gc")
    async def collect() -> dict[str, int]:
        return {"collected": gc.collect(), "objects": len(gc.get_objects())}

    @app.post("/bench/profile/start")
    async def profile_start() -> dict[str, bool]:
        profiler[:] = [cProfile.Profile()]
        profiler[0].enable()
        return {"profiling": True}

    @app.post("/bench/profile/stop")
    async def profile_stop() -> PlainTextResponse:
        profiler[0].disable()
        out = io.StringIO()
        for order in ("cumulative", "tottime"):
            out.write(f"-- top 30 by {order} --\n")
            pstats.Stats(profiler[0], stream=out).strip_dirs().sort_stats(order).print_stats(30)
        return PlainTextResponse(out.getvalue())

    @app.post("/bench/memory/mark")
    async def memory_mark() -> dict[str, int]:
        gc.collect()
        snapshots[:] = [tracemalloc.take_snapshot()]
        return {"traced": tracemalloc.get_traced_memory()[0]}

    @app.get("/bench/memory/diff")
    async def memory_diff(top: int = 25) -> dict[str, Any]:
        """Growth since the mark, in all and by the line that allocated it."""
        gc.collect()
        diff = tracemalloc.take_snapshot().compare_to(snapshots[0], "lineno")
        return {
            "total": sum(stat.size_diff for stat in diff),
            "top": [
                [str(stat.traceback[0]), stat.size_diff, stat.count_diff]
                for stat in sorted(diff, key=lambda stat: -stat.size_diff)[:top]
            ],
        }

    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


# -- the server, seen from the controller ---------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def proc_cpu(pid: int | str, task: str | None = None) -> float:
    """CPU seconds (user + system) of a process, or of one of its threads."""
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            found[task] = proc_cpu(pid, task)
    return found


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Server:
    """The server subprocess, and the controller's HTTP client for its /bench endpoints."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.pid = 0
        self._tmp = tempfile.TemporaryDirectory(prefix="fdbsync-bench-live-")
        self.workdir = Path(self._tmp.name)
        self._process: asyncio.subprocess.Process | None = None
        self._log = self.workdir / "server.log"

    async def __aenter__(self) -> Server:
        command = [sys.executable, __file__, "--serve", str(self.workdir), "--port", str(self.port)]
        command += ["--fragment-bytes", str(self.args.fragment_bytes)]
        command += ["--engine-query", self.args.engine_query]
        log = os.open(self._log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdout=log, stderr=asyncio.subprocess.STDOUT, env=self.env
            )
        finally:
            os.close(log)
        self.pid = self._process.pid
        self.http = httpx.AsyncClient(base_url=f"http://{HOST}:{self.port}", timeout=60)
        deadline = time.monotonic() + 60
        while True:
            if self._process.returncode is not None:
                raise RuntimeError(f"the server exited:\n{self.log()}")
            try:
                self.fragment_bytes = (await self.stats())["fragment_bytes"]
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{self.log()}") from None
                await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._tmp.cleanup()

    def log(self) -> str:
        return self._log.read_text(errors="replace")[-4000:]

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/bench/stats")
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    async def post(self, path: str, **params: Any) -> Any:
        response = await self.http.post(path, params=params)
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def wait_for(self, check: Callable[[dict[str, Any]], bool], within: float) -> bool:
        deadline = time.monotonic() + within
        while not check(await self.stats()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True


# -- clients --------------------------------------------------------------------------------
async def connect(factory: Callable[[], asyncio.Protocol], port: int) -> None:
    """A connection that closes with a reset (no TIME_WAIT left behind on this side)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (HOST, port))
        await loop.create_connection(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


class SseClient(asyncio.Protocol):
    """One SSE connection: HTTP/1.1 headers, chunked body, SSE events split on blank lines."""

    def __init__(self, fleet: SseFleet) -> None:
        self.fleet = fleet
        self.transport: asyncio.BaseTransport | None = None
        self.raw = bytearray()
        self.events = bytearray()
        self.headers = False
        self.chunk = 0  # >0: data bytes left in the chunk; 0: a size line next; -1: its CRLF
        self.initial: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.arrived = 0.0  # when it had the message the fleet waits for

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.fleet.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fleet.lost += 0 if self.fleet.closing else 1
        if not self.initial.done():
            self.initial.set_exception(ConnectionError(f"closed before its first message: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        raw = self.raw
        raw += data
        if not self.headers:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(raw[: raw.find(b"\r\n")])
            if b" 200 " not in status:
                if not self.initial.done():
                    self.initial.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            del raw[: end + 4]
            self.headers = True
        pos, size = 0, len(raw)
        while pos < size:
            if self.chunk > 0:
                take = min(self.chunk, size - pos)
                self.events += raw[pos : pos + take]
                pos += take
                self.chunk -= take
                if self.chunk == 0:
                    self.chunk = -1
            elif self.chunk < 0:
                if size - pos < 2:
                    break
                pos += 2
                self.chunk = 0
            else:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                self.chunk = int(bytes(raw[pos:eol]).split(b";")[0], 16) or -2
                pos = eol + 2
                if self.chunk == -2:  # the last chunk: the stream ended
                    pos = size
        del raw[:pos]
        events = self.events
        while (end := events.find(b"\r\n\r\n")) >= 0:
            event = bytes(events[:end])
            del events[: end + 4]
            if not event.startswith(b":"):  # a ping is a comment
                self.fleet.message(self, event, now)


class SseFleet:
    """N SSE clients of one path; waits until each has the message that holds a marker."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()
        self.clients: list[SseClient] = []
        self.want: bytes | None = None
        self.waiting = 0
        self.done: asyncio.Future[None] | None = None
        self.lost = 0
        self.closing = False

    def message(self, client: SseClient, event: bytes, now: float) -> None:
        if not client.initial.done():
            client.initial.set_result(now)
        elif self.want is not None and not client.arrived and self.want in event:
            client.arrived = now
            self.waiting -= 1
            if self.waiting == 0 and self.done is not None and not self.done.done():
                self.done.set_result(None)

    async def open(self, n: int, batch: int, pause: float) -> None:
        """Connect `n` clients, `batch` at a time, each batch waiting for its initial state."""
        for start in range(0, n, batch):
            made = [SseClient(self) for _ in range(min(batch, n - start))]
            await asyncio.gather(*(connect(lambda c=c: c, self.port) for c in made))
            self.clients += made
            await asyncio.wait_for(asyncio.gather(*(c.initial for c in made)), 60)
            if start + batch < n:
                await asyncio.sleep(pause)

    def expect(self, want: str) -> None:
        self.want = want.encode()
        for client in self.clients:
            client.arrived = 0.0
        self.waiting = len(self.clients)
        self.done = asyncio.get_running_loop().create_future()

    async def wait(self, within: float) -> None:
        assert self.done is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.done), within)
        except TimeoutError:
            raise TimeoutError(
                f"{self.waiting:,} of {len(self.clients):,} clients never got the message "
                f"({self.lost} connections lost)"
            ) from None

    def close(self) -> None:
        self.closing = True
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        self.clients = []


class PollClient(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection fetching one path (Content-Length bodies)."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.BaseTransport | None = None
        self.raw = bytearray()
        self.length = -1
        self.pending: asyncio.Future[tuple[bytes, float]] | None = None
        self.seen = 0  # the newest write this client has shown

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def get(self) -> tuple[bytes, float]:
        """The body of one response and when it was complete."""
        self.pending = asyncio.get_running_loop().create_future()
        self.transport.write(self.request)  # type: ignore[union-attr]
        return await self.pending

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        raw = self.raw
        raw += data
        if self.length < 0:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).lower()
            found = re.search(rb"\r\ncontent-length: *(\d+)", head)
            if not head.split(b"\r\n", 1)[0].count(b" 200 ") or found is None:
                if self.pending is not None and not self.pending.done():
                    self.pending.set_exception(ConnectionError(head[:200].decode(errors="replace")))
                return
            self.length = int(found.group(1))
            del raw[: end + 4]
        if len(raw) >= self.length:
            body = bytes(raw[: self.length])
            del raw[: self.length]
            self.length = -1
            if self.pending is not None and not self.pending.done():
                self.pending.set_result((body, now))


# -- scenarios ------------------------------------------------------------------------------
@dataclass
class StreamResult:
    design: str  # "live" or "floor"
    n: int
    fragment_bytes: int = 0
    connect_s: float = 0.0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    rss_after_writes_kb: int = 0
    idle_s: float = 0.0
    idle_cpu_s: float = 0.0
    idle_threads: dict[str, float] = field(default_factory=dict)
    latencies: list[list[float]] = field(default_factory=list)  # per write, ms per client
    written: list[list[float]] = field(default_factory=list)  # per write, server send ms
    write_ms: list[float] = field(default_factory=list)  # the write call itself
    client_cpu_ms: list[float] = field(default_factory=list)
    gc_ms: list[float] = field(default_factory=list)  # the server's collector, per write
    gc_full: int = 0  # full collections during the writes
    renders: list[int] = field(default_factory=list)  # fragments rendered, per write
    gc_objects: float = 0.0  # objects the collector tracks, per connection
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def kb_per_connection(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.n


@dataclass
class PollResult:
    n: int
    kind: str  # "fragment" or "page"
    window_s: float = 0.0
    cpu_s: float = 0.0
    responses: int = 0
    response_ms: list[float] = field(default_factory=list)
    staleness: list[list[float]] = field(default_factory=list)  # per write, ms per client


def threads_named(
    before: dict[str, float], after: dict[str, float], pid: int, names: dict[str, str]
) -> dict[str, float]:
    """CPU seconds per thread name (the event loop's thread is "main")."""
    found: dict[str, float] = {}
    for task, cpu in after.items():
        name = "main (event loop)" if task == str(pid) else names.get(task, "other")
        name = re.sub(r"_\d+$", "", name)  # ThreadPoolExecutor-0_3 -> ThreadPoolExecutor-0
        found[name] = found.get(name, 0.0) + cpu - before.get(task, 0.0)
    return found


async def run_stream(design: str, n: int, args: argparse.Namespace) -> StreamResult:
    """N clients on the live page or the floor: connect, idle, then `--writes` writes."""
    path = "/items?fdbsync-live=1" if design == "live" else "/floor"
    trigger = "/bench/write" if design == "live" else "/bench/broadcast"
    result = StreamResult(design, n)
    async with Server(args) as server:
        result.fragment_bytes = server.fragment_bytes
        objects = (await server.post("/bench/gc"))["objects"]
        await asyncio.sleep(args.settle)
        result.rss_before_kb = rss_kb(server.pid)
        fleet = SseFleet(server.port, path)
        began = time.monotonic()
        try:
            await fleet.open(n, args.batch, args.pause)
            result.connect_s = time.monotonic() - began
            count = "streams" if design == "live" else "floor_clients"
            if not await server.wait_for(
                lambda s: (s["live"] if design == "live" else s)[count] == n, 10
            ):
                raise RuntimeError(f"the server does not hold {n} {design} streams")
            # The set-up's garbage is not the writes' to collect.
            result.gc_objects = ((await server.post("/bench/gc"))["objects"] - objects) / n
            await asyncio.sleep(args.settle)
            result.rss_after_kb = rss_kb(server.pid)
            names = (await server.stats())["threads"]
            cpu, threads, start = proc_cpu(server.pid), thread_cpu(server.pid), time.monotonic()
            await asyncio.sleep(args.idle)
            result.idle_cpu_s = proc_cpu(server.pid) - cpu
            result.idle_s = time.monotonic() - start
            result.idle_threads = threads_named(threads, thread_cpu(server.pid), server.pid, names)
            for k in range(1, args.writes + 1):
                before = await server.stats()
                fleet.expect(marker(k))
                usage = resource.getrusage(resource.RUSAGE_SELF)
                answer = await server.post(trigger, k=k)
                await fleet.wait(WRITE_TIMEOUT)
                after = resource.getrusage(resource.RUSAGE_SELF)
                used = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
                result.client_cpu_ms.append(used * 1000)
                committed = answer["committed"]
                result.write_ms.append((committed - answer["called"]) * 1000)
                result.latencies.append([(c.arrived - committed) * 1000 for c in fleet.clients])
                key = "pushed" if design == "live" else "broadcast"
                await server.wait_for(lambda s, key=key: len(s[key]) >= n, 10)
                found = await server.stats()
                result.written.append([(t - committed) * 1000 for t in found[key]])
                result.gc_ms.append(found["gc_ms"] - before["gc_ms"])
                result.gc_full += found["gc_full"] - before["gc_full"]
                result.renders.append(found["live"]["renders"] - before["live"]["renders"])
                await asyncio.sleep(args.spacing)
            result.rss_after_writes_kb = rss_kb(server.pid)
            result.stats = await server.stats()
        finally:
            fleet.close()
    return result


async def run_poll(n: int, kind: str, args: argparse.Namespace) -> PollResult:
    """N clients fetching the page every 2 s, staggered, with a write every 3 s."""
    path = "/poll" if kind == "fragment" else "/items"
    result = PollResult(n, kind)
    async with Server(args) as server:
        await asyncio.sleep(args.settle)
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n\r\n".encode()
        clients: list[PollClient] = []
        try:
            for start in range(0, n, args.batch):
                made = [PollClient(request) for _ in range(min(args.batch, n - start))]
                await asyncio.gather(*(connect(lambda c=c: c, server.port) for c in made))
                await asyncio.gather(*(c.get() for c in made))  # the initial state
                clients += made
                await asyncio.sleep(args.pause)
            window = args.poll_window
            seen: dict[int, list[float]] = {}
            commits: dict[int, float] = {}
            loop = asyncio.get_running_loop()
            begin = loop.time() + 0.2
            end = begin + window

            async def poller(client: PollClient, first: float) -> None:
                at = first
                while at < end:
                    await asyncio.sleep(max(0.0, at - loop.time()))
                    sent = time.monotonic()
                    body, got = await client.get()
                    result.response_ms.append((got - sent) * 1000)
                    found = MARK.search(body)
                    newest = int(found.group(1)) if found else 0
                    for k in range(client.seen + 1, newest + 1):
                        seen.setdefault(k, []).append(got)
                    client.seen = max(client.seen, newest)
                    at = max(at + POLL_INTERVAL, loop.time())  # htmx re-arms its timer each poll

            async def writer() -> None:
                k, at = 0, 0.5
                while at + POLL_INTERVAL + 0.5 <= window:
                    await asyncio.sleep(max(0.0, begin + at - loop.time()))
                    k += 1
                    answer = await server.post("/bench/write", k=k)
                    commits[k] = answer["committed"]
                    at += WRITE_EVERY

            tasks = [
                asyncio.create_task(poller(c, begin + POLL_INTERVAL * i / n))
                for i, c in enumerate(clients)
            ]
            writing = asyncio.create_task(writer())
            await asyncio.sleep(max(0.0, begin - loop.time()))
            cpu, start = proc_cpu(server.pid), time.monotonic()
            await asyncio.sleep(max(0.0, end - loop.time()))
            result.cpu_s = proc_cpu(server.pid) - cpu
            result.window_s = time.monotonic() - start
            result.responses = len(result.response_ms)
            await asyncio.gather(*tasks, writing)
            for k, committed in sorted(commits.items()):
                result.staleness.append([(t - committed) * 1000 for t in seen.get(k, [])])
        finally:
            for client in clients:
                if client.transport is not None:
                    client.transport.close()
    return result


async def profile(design: str, n: int, args: argparse.Namespace) -> None:
    """cProfile of the server's event-loop thread during one write to `n` clients (or, for
    "idle", `--idle` seconds of `n` idle live clients)."""
    path = "/floor" if design == "floor" else "/items?fdbsync-live=1"
    trigger = "/bench/broadcast" if design == "floor" else "/bench/write"
    async with Server(args) as server:
        fleet = SseFleet(server.port, path)
        try:
            await fleet.open(n, args.batch, args.pause)
            await server.post("/bench/gc")
            await asyncio.sleep(args.settle)
            if design == "idle":
                await server.post("/bench/profile/start")
                cpu = proc_cpu(server.pid)
                await asyncio.sleep(args.idle)
                cpu = proc_cpu(server.pid) - cpu
                report = await server.post("/bench/profile/stop")
                print(f"{n:,} idle live clients, {args.idle:.0f} s under cProfile: {cpu:.2f} s CPU")
                print(report)
                return
            for k in (1, 2):  # the first warms up, the second is profiled
                fleet.expect(marker(k))
                if k == 2:
                    await server.post("/bench/profile/start")
                answer = await server.post(trigger, k=k)
                await fleet.wait(WRITE_TIMEOUT)
                if k == 2:
                    report = await server.post("/bench/profile/stop")
                await asyncio.sleep(args.spacing)
            ms = sorted((c.arrived - answer["committed"]) * 1000 for c in fleet.clients)
        finally:
            fleet.close()
    print(f"{design}, {n:,} clients, one write under cProfile (the server's event-loop thread):")
    print(f"p50 {quantile(ms, 0.5):.1f} ms, p99 {quantile(ms, 0.99):.1f} ms, max {ms[-1]:.1f} ms\n")
    print(report)


async def profile_memory(n: int, args: argparse.Namespace) -> None:
    """tracemalloc in the server: what `n` connections of each design hold, and where."""
    for design in ("floor", "live"):
        path = "/items?fdbsync-live=1" if design == "live" else "/floor"
        async with Server(args, {"FDBSYNC_BENCH_TRACEMALLOC": "1"}) as server:
            fleet = SseFleet(server.port, path)
            try:
                await server.post("/bench/memory/mark")
                await fleet.open(n, args.batch, args.pause)
                await asyncio.sleep(args.settle)
                response = await server.http.get("/bench/memory/diff")
                found = response.json()
            finally:
                fleet.close()
        print(f"### {design}: {found['total'] / n / 1024:.1f} KB per connection (tracemalloc)\n")
        rows = [
            [f"`{where}`", f"{size / n:,.0f}", f"{count / n:.1f}"]
            for where, size, count in found["top"]
        ]
        print(table(["allocated at", "bytes per connection", "blocks per connection"], rows))
        print()


# -- reporting ------------------------------------------------------------------------------
def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile (p99 of 1,000 values is the 990th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def per_write(rows: list[list[float]], q: float | None) -> float:
    """A quantile over clients (max when q is None) for each write, then the median."""
    return med([max(r) if q is None else quantile(r, q) for r in rows if r])


def report(streams: list[StreamResult], polls: list[PollResult], args: argparse.Namespace) -> None:
    by = {(r.design, r.n): r for r in streams}
    sizes = sorted({r.n for r in streams})
    rows = []
    for n in sizes:
        floor_p99 = per_write(by["floor", n].latencies, 0.99) if ("floor", n) in by else None
        for design in ("floor", "live"):
            r = by.get((design, n))
            if r is None:
                continue
            p99 = per_write(r.latencies, 0.99)
            ratio = "1.00" if design == "floor" else "-"
            if design == "live" and floor_p99:
                ratio = f"{p99 / floor_p99:.2f}"
            rows.append(
                [
                    f"{n:,}",
                    design,
                    f"{per_write(r.latencies, 0.5):.1f}",
                    f"{p99:.1f}",
                    f"{per_write(r.latencies, None):.1f}",
                    ratio,
                    f"{per_write(r.written, 0.99):.1f}",
                    f"{med(r.write_ms):.1f}",
                    f"{med(r.client_cpu_ms):.0f}",
                    f"{med(r.gc_ms):.0f} ({r.gc_full})",
                    f"{med(r.renders):.0f}" if design == "live" else "-",
                    f"{r.connect_s:.1f}",
                ]
            )
    print(f"### Push latency (ms from commit to each client; median of {args.writes} writes)\n")
    header = ["clients", "design", "p50 ms", "p99 ms", "max ms", "p99 vs floor"]
    header += ["server wrote p99 ms", "write call ms", "client CPU ms"]
    header += ["server GC ms (full GCs)", "renders", "connect s"]
    print(table(header, rows))
    print()

    rows = []
    for n in sizes:
        floor = by.get(("floor", n))
        for design in ("floor", "live"):
            r = by.get((design, n))
            if r is None:
                continue
            above = "-"
            if design == "live" and floor is not None:
                above = f"{r.kb_per_connection - floor.kb_per_connection:.1f}"
            rows.append(
                [
                    f"{n:,}",
                    design,
                    f"{r.idle_cpu_s:.2f}",
                    f"{100 * r.idle_cpu_s / r.idle_s:.2f}",
                    f"{r.rss_before_kb / 1024:.1f}",
                    f"{r.rss_after_kb / 1024:.1f}",
                    f"{r.kb_per_connection:.1f}",
                    above,
                    f"{(r.rss_after_writes_kb - r.rss_before_kb) / n:.1f}",
                    f"{r.gc_objects:.0f}",
                ]
            )
    idle = med([r.idle_s for r in streams])
    print(f"### Idle server ({idle:.0f} s with the clients connected, nothing changing)\n")
    header = ["clients", "design", "server CPU s", "% of a core", "RSS before MB"]
    header += ["RSS connected MB", "KB per connection", "KB above floor", "KB each after writes"]
    header += ["GC-tracked objects each"]
    print(table(header, rows))
    print()
    rows = []
    for r in streams:
        if r.design == "live":
            threads = ", ".join(
                f"{name} {cpu * 1000:.0f}" for name, cpu in sorted(r.idle_threads.items()) if cpu
            )
            rows.append([f"{r.n:,}", threads or "-"])
    if rows:
        print("Idle live server CPU by thread (ms):\n")
        print(table(["clients", "threads"], rows))
        print()

    if polls:
        rows = []
        for p in polls:
            live = by.get(("live", p.n))
            live_cpu = live.idle_cpu_s / live.idle_s * p.window_s if live else None
            ratio = "-"
            if live_cpu is not None:
                ratio = f"{p.cpu_s / live_cpu:.0f}" if live_cpu > 0 else "inf"
            stale = [statistics.fmean(s) for s in p.staleness if s]
            showed = sum(len(s) for s in p.staleness)
            rows.append(
                [
                    f"{p.n:,}",
                    p.kind,
                    f"{p.responses / p.window_s:.0f} of {p.n / POLL_INTERVAL:.0f}",
                    f"{p.cpu_s:.2f}",
                    f"{100 * p.cpu_s / p.window_s:.1f}",
                    f"{quantile(p.response_ms, 0.5):.1f}" if p.response_ms else "-",
                    f"{quantile(p.response_ms, 0.99):.1f}" if p.response_ms else "-",
                    f"{med(stale):.0f}",
                    f"{showed:,} of {len(p.staleness) * p.n:,}",
                    "-" if live_cpu is None else f"{live_cpu:.2f}",
                    ratio,
                ]
            )
        window = med([p.window_s for p in polls])
        print(
            f"### Polling every {POLL_INTERVAL:.0f} s ({window:.0f} s; a write every "
            f"{WRITE_EVERY:.0f} s)\n"
        )
        header = [
            "clients",
            "polled",
            "polls/s (due)",
            "server CPU s",
            "% of a core",
            "response p50 ms",
        ]
        header += ["response p99 ms", "mean staleness ms", "changes shown"]
        header += ["live idle CPU s (same time)", "polling ÷ live idle"]
        print(table(header, rows))
        print()
    goals(by, polls)


def goals(by: dict[tuple[str, int], StreamResult], polls: list[PollResult]) -> None:
    rows = []
    for n in (100, 1_000):
        live, floor = by.get(("live", n)), by.get(("floor", n))
        if live is None or floor is None:
            continue
        p99, floor_p99 = per_write(live.latencies, 0.99), per_write(floor.latencies, 0.99)
        ok = p99 <= GOAL_RATIO * floor_p99
        goal = f"p99 ≤ {GOAL_RATIO:.0f}x the floor at {n:,} clients"
        if n == 1_000:
            goal += f", < {GOAL_P99_MS_1000:.0f} ms"
            ok = ok and p99 < GOAL_P99_MS_1000
        figure = f"{p99:.1f} ms vs {floor_p99:.1f} ms ({p99 / floor_p99:.2f}x)"
        rows.append([goal, figure, "met" if ok else "missed"])
    for n in sorted({n for _, n in by}):
        if n in (100, 1_000):
            continue
        live, floor = by.get(("live", n)), by.get(("floor", n))
        if live is None or floor is None:
            continue
        p99, floor_p99 = per_write(live.latencies, 0.99), per_write(floor.latencies, 0.99)
        figure = f"{p99:.1f} ms vs {floor_p99:.1f} ms ({p99 / floor_p99:.2f}x)"
        rows.append([f"p99 reported at {n:,} clients", figure, "reported"])
    for p in polls:
        if p.n != 1_000 or ("live", p.n) not in by:
            continue
        live = by["live", p.n]
        live_rate, poll_rate = live.idle_cpu_s / live.idle_s, p.cpu_s / p.window_s
        ratio = poll_rate / live_rate if live_rate else float("inf")
        figure = (
            f"{ratio:.0f}x ({100 * live_rate:.2f}% of a core live idle, "
            f"{100 * poll_rate:.1f}% polling)"
        )
        rows.append(
            [
                f"idle CPU ≥ {GOAL_CPU_RATIO:.0f}x below polling ({p.kind}) at 1,000",
                figure,
                "met" if ratio >= GOAL_CPU_RATIO else "missed",
            ]
        )
    largest = max((n for design, n in by if design == "live" and ("floor", n) in by), default=0)
    if largest:
        live, floor = by["live", largest], by["floor", largest]
        above = live.kb_per_connection - floor.kb_per_connection
        figure = (
            f"{above:.1f} KB above ({live.kb_per_connection:.1f} vs "
            f"{floor.kb_per_connection:.1f} KB, {largest:,} connections)"
        )
        rows.append(
            [
                f"memory per live page ≤ {GOAL_KB:.0f} KB above bare SSE",
                figure,
                "met" if above <= GOAL_KB else "missed",
            ]
        )
    print("### Against the goals\n")
    print(table(["goal", "figure", "status"], rows))


# -- main -----------------------------------------------------------------------------------
def sizes_of(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny N and short windows")
    parser.add_argument("--sizes", type=sizes_of, default=SIZES, help="live and floor clients")
    parser.add_argument("--poll-sizes", type=sizes_of, default=POLL_SIZES, help="polling clients")
    parser.add_argument("--idle", type=float, default=30.0, help="idle window, seconds")
    parser.add_argument("--poll-window", type=float, default=30.0, help="polling, seconds")
    parser.add_argument("--writes", type=int, default=5, help="writes per scenario")
    parser.add_argument("--spacing", type=float, default=1.0, help="seconds between writes")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before RSS readings")
    parser.add_argument("--batch", type=int, default=100, help="connections opened together")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between batches")
    parser.add_argument("--fragment-bytes", type=int, default=FRAGMENT_BYTES)
    parser.add_argument(
        "--poll", choices=("fragment", "page", "both"), default="both", help="what polls fetch"
    )
    parser.add_argument(
        "--profile",
        choices=("live", "floor", "idle", "memory"),
        help="cProfile the server during one write (live or floor) or while idle (live), "
        "or tracemalloc what connections hold (both)",
    )
    parser.add_argument("--profile-n", type=int, default=1_000, help="clients for --profile")
    parser.add_argument(
        "--engine-query", default="", help="options for the server's engine URL (diagnostics)"
    )
    parser.add_argument("--serve", metavar="WORKDIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.poll_sizes = QUICK_SIZES, QUICK_SIZES
        args.idle, args.poll_window, args.writes = 2.0, 4.5, 2
        args.spacing, args.settle, args.batch = 0.2, 0.3, 20
    return args


async def main(args: argparse.Namespace) -> None:
    raise_nofile(max((*args.sizes, *args.poll_sizes, args.profile_n)) + 100)
    if args.profile == "memory":
        await profile_memory(args.profile_n, args)
        return
    if args.profile:
        await profile(args.profile, args.profile_n, args)
        return
    load = os.getloadavg()
    began = time.perf_counter()
    streams: list[StreamResult] = []
    polls: list[PollResult] = []
    for n in sorted(set(args.sizes) | set(args.poll_sizes)):
        if n in args.sizes:
            for design in ("floor", "live"):
                streams.append(await run_stream(design, n, args))
                print(f"... {design} {n:,} done", file=sys.stderr)
        if n in args.poll_sizes:
            for kind in ("fragment", "page") if args.poll == "both" else (args.poll,):
                polls.append(await run_poll(n, kind, args))
                print(f"... polling ({kind}) {n:,} done", file=sys.stderr)
    fragment = streams[0].fragment_bytes if streams else args.fragment_bytes
    print(
        f"One uvicorn worker, embedded engine; message {fragment:,} bytes ({COLLECTION} "
        f"records); clients {', '.join(f'{n:,}' for n in args.sizes)} (polling "
        f"{', '.join(f'{n:,}' for n in args.poll_sizes)}), connected {args.batch} at a time; "
        f"{time.perf_counter() - began:.0f} s; load average {load[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after.\n"
    )
    report(streams, polls, args)


if __name__ == "__main__":
    arguments = parse()
    if arguments.serve:
        serve(
            Path(arguments.serve), arguments.port, arguments.fragment_bytes, arguments.engine_query
        )
    else:
        print(f"client event loop: {use_uvloop()}", file=sys.stderr)
        asyncio.run(main(arguments))
