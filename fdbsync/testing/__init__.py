"""Helpers for testing live pages in pytest: a real server and an SSE client.

```python
# conftest.py
pytest_plugins = ["fdbsync.testing"]
```

`serve(app)` / `LiveServer` run uvicorn on 127.0.0.1 on the test's event loop (the
`live_server` fixture starts them and stops them at teardown); `LiveClient` fetches pages,
opens their streams and waits for fragments. This package imports pytest; `fdbsync` itself
does not.

PYTEST_DONT_REWRITE: nothing here asserts, and a conftest that imports this package before
naming it in pytest_plugins would otherwise get pytest's "already imported" warning.
"""

from __future__ import annotations

from .client import ClientStream, LiveClient, LivePage, StreamEnded
from .markup import split_fragments
from .plugin import LiveServerFactory, live_server
from .server import LiveServer, LiveServerError, serve
from .sse import SSEMessage
from .waiting import eventually

__all__ = [
    "ClientStream",
    "LiveClient",
    "LivePage",
    "LiveServer",
    "LiveServerError",
    "LiveServerFactory",
    "SSEMessage",
    "StreamEnded",
    "eventually",
    "live_server",
    "serve",
    "split_fragments",
]
