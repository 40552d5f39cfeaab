"""The web layer: `@live_sync` routes, their live SSE streams, fragments and htmx helpers.

live = LiveSync(repo, Jinja2Templates("templates"))
app = FastAPI(lifespan=live.lifespan)

@app.get("/people")
@live_sync("people.html")
async def people(session: LiveSession) -> None:
    await session.sync_all("people", Person)
"""

from .context import HtmxVersion, LiveContext
from .errors import FragmentError, LiveSyncError
from .fragments import Fragment, FragmentRenderer
from .live import LiveStats, LiveSync, live_of
from .route import LiveRoute, live_sync
from .stream import LiveStream
from .wire import LIVE_PARAM, element_id

__all__ = [
    "LIVE_PARAM",
    "Fragment",
    "FragmentError",
    "FragmentRenderer",
    "HtmxVersion",
    "LiveContext",
    "LiveRoute",
    "LiveStats",
    "LiveStream",
    "LiveSync",
    "LiveSyncError",
    "element_id",
    "live_of",
    "live_sync",
]
