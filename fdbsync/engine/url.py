"""Choosing an engine from a URL: `sqlite:///path` (embedded) or `fdb://[cluster file]`."""

from __future__ import annotations

import os
from dataclasses import fields
from urllib.parse import parse_qsl, urlsplit

from .base import Engine
from .limits import Limits

ENV_VAR = "FDBSYNC_URL"
DEFAULT_URL = "sqlite:///var/fdbsync.db"

_LIMIT_OPTIONS = {f.name: f.type for f in fields(Limits)}
_ENGINE_OPTIONS = {"watch_poll_interval": float, "read_threads": int}


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the one given, else $FDBSYNC_URL, else a file under ./var/."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def create_engine(url: str | None = None, *, limits: Limits | None = None) -> Engine:
    """An engine for `url` (not yet open: `async with engine:` or `await engine.open()`).

    `sqlite:///relative/file.db` and `sqlite:////absolute/file.db` name the embedded
    engine's file; `fdb://` opens FoundationDB through the default cluster file and
    `fdb:///path/to/fdb.cluster` through the one given. Query parameters set limits and
    options, for example `?transaction_time=1&max_watches=100&watch_poll_interval=0.01`.
    """
    url = resolve_url(url)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        from .sqlite.engine import SqliteEngine

        if parts.netloc:
            raise ValueError(f"{url}: use sqlite:///relative.db or sqlite:////absolute.db")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError(f"{url}: no database file named")
        engine_values = {k: _ENGINE_OPTIONS[k](v) for k, v in query.items() if k in _ENGINE_OPTIONS}
        limits = _limits(url, query, limits, known=set(engine_values))
        return SqliteEngine(path, limits=limits, url=url, **engine_values)
    if parts.scheme == "fdb":
        # Imports no bindings: the client library is loaded when the engine opens.
        from .fdb.engine import FdbEngine

        if parts.netloc:
            raise ValueError(
                f"{url}: name a cluster file, not a host: fdb:// (the default cluster file) "
                "or fdb:///path/to/fdb.cluster"
            )
        cluster_file = "/" + parts.path.lstrip("/") if parts.path.strip("/") else None
        return FdbEngine(cluster_file, limits=_limits(url, query, limits), url=url)
    raise ValueError(f"{url}: unknown engine scheme {parts.scheme!r} (expected sqlite or fdb)")


def _limits(
    url: str, query: dict[str, str], limits: Limits | None, known: set[str] | None = None
) -> Limits | None:
    """`limits` with the URL's limit options applied; ValueError for any unknown option."""
    values = {k: _convert(k, v, url) for k, v in query.items() if k in _LIMIT_OPTIONS}
    unknown = set(query) - set(values) - (known or set())
    if unknown:
        raise ValueError(f"{url}: unknown option(s) {', '.join(sorted(unknown))}")
    if not values:
        return limits
    base = limits or Limits()
    return Limits(**{**{f.name: getattr(base, f.name) for f in fields(Limits)}, **values})


def _convert(name: str, value: str, url: str) -> int | float:
    try:
        return float(value) if name == "transaction_time" else int(value)
    except ValueError:
        raise ValueError(f"{url}: option {name} must be a number, got {value!r}") from None
