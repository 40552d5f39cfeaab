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

import anyio
from fastapi import Request, Response
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from ..sync.errors import WatchLimitError
from ..sync.session import LiveSession
from .context import HtmxVersion
from .fragments import Fragment, FragmentSpec, digest, fragments_by_label
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
        signature, session_name, request_name, added = _endpoint_signature(fn)

        @functools.wraps(fn)
        async def endpoint(**kwargs: Any) -> Response:
            request: Request = kwargs.pop(request_name) if added else kwargs[request_name]
            return await _serve(fn, route, live, request, session_name, kwargs)

        endpoint.__signature__ = signature  # type: ignore[attr-defined]
        return endpoint

    return decorate


async def _serve(
    fn: RouteFunction,
    route: LiveRoute,
    live: LiveSync | None,
    request: Request,
    session_name: str,
    kwargs: dict[str, Any],
) -> Response:
    live = live or live_of(request)
    streaming = LIVE_PARAM in request.query_params
    session = LiveSession(live.repo, watch=streaming)
    try:
        answer = await fn(**{session_name: session}, **kwargs)
        if answer is not None:
            session.close()
            return answer
        if streaming:
            return _stream(live, route, request, session)
        return _page(live, route, request, session)
    except WatchLimitError as error:
        session.close()
        logger.warning("live stream %s refused: %s", request.url.path, error)
        return Response(
            "Too many live pages right now; try again shortly.\n",
            status_code=503,
            headers={"Retry-After": str(live.retry_after), "Cache-Control": "no-store"},
            media_type="text/plain",
        )
    except BaseException:
        session.close()
        raise


def _page(live: LiveSync, route: LiveRoute, request: Request, session: LiveSession) -> Response:
    """The page, and a token that lets its first connect skip what it already shows."""
    try:
        shown: dict[str, str] = {}
        context = live.fragment_context(session, request, route)
        for label in session.labels:
            for fragment in route.fragments_for(label):
                html = live.renderer.render(fragment, label, route.template, context)
                shown[fragment.name or label] = digest(html)
        token = live.remember_render(shown) if shown else "1"
    finally:
        session.close()
    url = request.url.include_query_params(**{LIVE_PARAM: token})
    stream_url = f"{url.path}?{url.query}"
    page = {**session.assigns, "live": live.page_context(request, route, stream_url)}
    return live.templates.TemplateResponse(request, route.template, page)


def _stream(
    live: LiveSync, route: LiveRoute, request: Request, session: LiveSession
) -> EventSourceResponse:
    shown = live.recall_render(request.query_params[LIVE_PARAM])
    stream = LiveStream(live, session, request, route, shown)
    return EventSourceResponse(
        stream.events(),
        ping=live.ping_interval,
        send_timeout=live.send_timeout,
        headers={"Cache-Control": "no-store"},
        # A request that never starts the stream (HEAD) still lets go of its session.
        background=BackgroundTask(session.close),
        # When the server starts to stop, sse-starlette "sets" this: the stream ends and its
        # response completes (instead of being cut off), within the grace period.
        shutdown_event=cast(anyio.Event, _EndOnShutdown(stream)),
        shutdown_grace_period=live.shutdown_grace,
    )


class _EndOnShutdown:
    """Stands in for sse-starlette's shutdown event, whose only use is `set()`."""

    def __init__(self, stream: LiveStream) -> None:
        self.stream = stream

    def set(self) -> None:
        self.stream.end("the server is stopping")


def _endpoint_signature(fn: RouteFunction) -> tuple[inspect.Signature, str, str, bool]:
    """The signature FastAPI sees: the route's own parameters, annotations resolved, without
    the LiveSession and with a Request; the names of both, and whether the Request was
    added."""
    hints = get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    sessions = [name for name in signature.parameters if hints.get(name) is LiveSession]
    if len(sessions) != 1:
        raise TypeError(
            f"@live_sync route {fn.__qualname__} must take exactly one parameter annotated "
            f"LiveSession (found {len(sessions)})"
        )
    requests = [name for name in signature.parameters if hints.get(name) is Request]
    parameters = [
        parameter.replace(
            annotation=hints.get(name, parameter.annotation),
            kind=inspect.Parameter.KEYWORD_ONLY,
        )
        for name, parameter in signature.parameters.items()
        if name != sessions[0]
    ]
    added = not requests
    request_name = requests[0] if requests else "fdbsync_request"
    if added:
        parameters.append(
            inspect.Parameter(request_name, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )
    return (
        signature.replace(parameters=parameters, return_annotation=Response),
        sessions[0],
        request_name,
        added,
    )
