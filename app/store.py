"""The app's engine, repo, templates and live set-up, shared by its routers."""

from __future__ import annotations

from fastapi.templating import Jinja2Templates
from starlette.requests import Request

from fdbsync import LiveSync, Repo, create_engine
from fdbsync.web import HtmxVersion

from .config import HTMX_DEFAULT, ROOT
from .models import Person, Pin, SignIn

engine = create_engine()
repo = Repo(engine, models=[Person, Pin, SignIn], multi_tenant=True)
templates = Jinja2Templates(directory=ROOT / "templates")


def htmx_version(request: Request) -> HtmxVersion:
    """htmx 4 by default; the `htmx` cookie picks 2 (the browser tests run both)."""
    chosen = request.cookies.get("htmx")
    if chosen == "2":
        return 2
    if chosen == "4":
        return 4
    return HTMX_DEFAULT


live = LiveSync(repo, templates, htmx=htmx_version, static_url="/static/vendor")
