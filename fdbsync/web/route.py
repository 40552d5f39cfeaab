"""`@live_sync`: one FastAPI route serves a page and, when asked with the live marker, its
live stream.

Both requests run the route with all its dependencies (authentication, tenant, path and query
parameters), as LiveView mounts once disconnected and once connected. The page request reads
once and holds nothing; the stream request's reads become watches.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast, get_type_hints
from urllib.parse import quote

import anyio
from fastapi import BackgroundTasks, Request, Response
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

from ..sync.errors import SyncError, WatchLimitError
from ..sync.session import LiveSession
from .context import HtmxVersion
from .fragments import Fragment, FragmentSpec, fragments_by_label
from .live import LiveSync, live_of
from .stream import LiveStream
from .wire import LIVE_PARAM, check_name

__all__ = ["LiveRoute", "live_sync"]

logger = logging.getLogger("fdbsync.web")

#: A live route: it gets a LiveSession (and whatever else FastAPI injects), syncs labels,
#: and returns None, or a Response to send instead of the page (a redirect, say).
RouteFunction = Callable[..., Awaitable[Response | None]]


@dataclass(frozen=True)
class LiveRoute:
    """A live route's template, its fragments, and its htmx version if not the app's."""

    template: str
    fragments: Mapping[str, tuple[Fragment, ...]] = field(default_factory=dict)
    htmx: HtmxVersion | None = None

    def fragments_for(self, label: str) -> tuple[Fragment, ...]:
        """A label's fragments: as mapped, else the block named after it."""
        found = self.fragments.get(label)
        if found is None:
            return (Fragment(block=check_name(label), name=label),)
        return found


def live_sync(
    template: str,
    *,
    fragments: Mapping[str, FragmentSpec] | None = None,
    htmx: HtmxVersion | None = None,
    live: LiveSync | None = None,
) -> Callable[[RouteFunction], Callable[..., Awaitable[Response]]]:
    """Make a FastAPI route live.

    The route takes a `LiveSession` parameter and syncs its labels; the page is `template`
    rendered with the session's assigns and `live` (see LiveContext). Each label's fragment
    is the block of the same name unless `fragments` maps it elsewhere. `htmx` overrides
    the app's htmx version; `live` the app's LiveSync.
    """
    route = LiveRoute(template, fragments_by_label(fragments), htmx)

    def decorate(fn: RouteFunction) -> Callable[..., Awaitable[Response]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@live_sync routes are async functions; {fn.__qualname__} is not")
        signature, session_name, injected = _endpoint_signature(fn)

        @functools.wraps(fn)
        async def endpoint(**kwargs: Any) -> Response:
            given = {kind: kwargs[name] for kind, (name, _) in injected.items()}
            for name, added in injected.values():
                if added:
                    del kwargs[name]
            return await _serve(fn, route, live, session_name, kwargs, **given)

        endpoint.__signature__ = signature  # type: ignore[attr-defined]
        return endpoint

    return decorate


async def _serve(
    fn: RouteFunction,
    route: LiveRoute,
    live: LiveSync | None,
    session_name: str,
    kwargs: dict[str, Any],
    *,
    request: Request,
    response: Response,
    tasks: BackgroundTasks,
) -> Response:
    """Run the route, then answer with its Response, the page or the stream. Headers and
    cookies set on FastAPI's injected Response (by the route or a dependency) and its
    background tasks go with whatever is sent."""
    live = live or live_of(request)
    streaming = LIVE_PARAM in request.query_params
    session = LiveSession(live.repo, watch=streaming)
    stream = LiveStream(live, session, request, route) if streaming else None
    release = session.close if stream is None else stream.release
    try:
        answer = await fn(**{session_name: session}, **kwargs)
        if answer is not None:
            release()
            return _with(answer, response, None)
        if stream is None:
            return _with(_page(live, route, request, session), response, tasks)
        if session.closed:  # ended (by a sign-out, say) while the route ran
            release()
            return _with(Response(status_code=204), response, tasks)
        return _with(await _stream(live, request, stream), response, tasks, status=False)
    except WatchLimitError as error:
        release()
        logger.warning("live stream %s refused: %s", request.url.path, error)
        refused = Response(
            "Too many live pages right now; try again shortly.\n",
            status_code=503,
            headers={"Retry-After": str(live.retry_after), "Cache-Control": "no-store"},
            media_type="text/plain",
        )
        return _with(refused, response, tasks, status=False)
    except SyncError:
        if stream is None or not session.closed:
            release()
            raise
        release()  # ended while the route's sync ran
        return _with(Response(status_code=204), response, tasks)
    except BaseException:
        release()
        raise


def _with(
    sent: Response, injected: Response, tasks: BackgroundTasks | None, *, status: bool = True
) -> Response:
    """`sent` with the headers (cookies too) and status set on FastAPI's injected Response,
    and the background tasks, after any of its own."""
    sent.headers.raw.extend(
        (name, value) for name, value in injected.headers.raw if name != b"content-length"
    )
    if status and injected.status_code:
        sent.status_code = injected.status_code
    if tasks is not None and tasks.tasks:
        own = [sent.background] if sent.background is not None else []
        sent.background = BackgroundTasks([*own, *tasks.tasks])
    return sent


def _page(live: LiveSync, route: LiveRoute, request: Request, session: LiveSession) -> Response:
    """The page, and a token that lets its first connect skip what it already shows."""
    try:
        shown: dict[str, str] = {}
        context = live.fragment_context(session, request, route)
        for label in session.labels:
            for fragment in route.fragments_for(label):
                rendered = live.renderer.rendered(fragment, label, route.template, context)
                shown[rendered.name] = rendered.digest
        token = live.remember_render(shown) if shown else "1"
    finally:
        session.close()
    query = request.url.include_query_params(**{LIVE_PARAM: token}).query
    stream_url = f"{_request_path(request)}?{query}"
    page = {**session.assigns, "live": live.page_context(request, route, stream_url)}
    return live.templates.TemplateResponse(request, route.template, page)


def _request_path(request: Request) -> str:
    """The page's path as the browser sent it (still percent-encoded: decoding it could name
    another record, or another host), never starting with `//`, which a browser would take
    for a host."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(request.url.path, safe="/:@!$&'()*+,;=~")
    if path.startswith("//"):
        path = "/%2F" + path[2:]
    return path


async def _stream(live: LiveSync, request: Request, stream: LiveStream) -> _LiveResponse:
    stream.shown = await live.recall_render(request.query_params[LIVE_PARAM])
    return _LiveResponse(
        stream,
        ping=live.ping_interval,
        send_timeout=live.send_timeout,
        headers={"Cache-Control": "no-store"},
        # A request that never starts the stream (HEAD) still lets go of its session.
        background=BackgroundTask(stream.release),
        # When the server starts to stop, sse-starlette "sets" this: the stream ends and its
        # response completes (instead of being cut off), within the grace period.
        shutdown_event=cast(anyio.Event, _EndOnShutdown(stream)),
        shutdown_grace_period=live.shutdown_grace,
    )


class _LiveResponse(EventSourceResponse):
    """The stream's response. A client too slow to take a message within the send timeout
    is let go quietly (logged), not reported as the app's error."""

    def __init__(self, stream: LiveStream, **options: Any) -> None:
        super().__init__(stream.events(), **options)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            self.stream.end("the client took longer than send_timeout to take a message")
            self.stream.release()
            logger.info("live stream %s: %s", self.stream.request.url.path, self.stream.end_reason)


class _EndOnShutdown:
    """Stands in for sse-starlette's shutdown event, whose only use is `set()`."""

    def __init__(self, stream: LiveStream) -> None:
        self.stream = stream

    def set(self) -> None:
        self.stream.end("the server is stopping")


#: What the endpoint needs from FastAPI besides the route's own parameters, by kind.
_INJECTED = {"request": Request, "response": Response, "tasks": BackgroundTasks}


def _endpoint_signature(
    fn: RouteFunction,
) -> tuple[inspect.Signature, str, dict[str, tuple[str, bool]]]:
    """The signature FastAPI sees: the route's own parameters, annotations resolved, without
    the LiveSession, and with a Request, a Response and BackgroundTasks (the route's own if
    it takes them). The session's name, and for each injected kind its parameter's name and
    whether it was added."""
    hints = get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    sessions = [name for name in signature.parameters if hints.get(name) is LiveSession]
    if len(sessions) != 1:
        raise TypeError(
            f"@live_sync route {fn.__qualname__} must take exactly one parameter annotated "
            f"LiveSession (found {len(sessions)})"
        )
    parameters = [
        parameter.replace(
            annotation=hints.get(name, parameter.annotation),
            kind=inspect.Parameter.KEYWORD_ONLY,
        )
        for name, parameter in signature.parameters.items()
        if name != sessions[0]
    ]
    injected: dict[str, tuple[str, bool]] = {}
    for kind, annotation in _INJECTED.items():
        own = [name for name in signature.parameters if hints.get(name) is annotation]
        if own:
            injected[kind] = (own[0], False)
        else:
            name = f"fdbsync_{kind}"
            parameters.append(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
            )
            injected[kind] = (name, True)
    return (
        signature.replace(parameters=parameters, return_annotation=Response),
        sessions[0],
        injected,
    )
