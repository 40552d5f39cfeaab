"""The example app: a multi-tenant team directory whose pages stay live.

`make run` seeds it, migrates it and serves it with uvicorn (two workers on the embedded
engine; any worker serves any page or stream). Sign in with a demo account from README.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from fdbsync.web import LIVE_PARAM

from . import api, auth, metrics, pages
from .config import ROOT
from .security import SECRET, SESSION_COOKIE, SignInRequired
from .store import live

app = FastAPI(
    title="fdbsync team directory",
    description="The fdbsync example app: live htmx pages and a JSON API over one repo.",
    lifespan=live.lifespan,
)
app.add_middleware(
    SessionMiddleware,
    secret_key=SECRET,
    session_cookie=SESSION_COOKIE,
    same_site="lax",
    max_age=14 * 24 * 3600,
)
app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
app.include_router(auth.router)
app.include_router(pages.router)
app.include_router(api.router)
app.include_router(metrics.router)


@app.exception_handler(SignInRequired)
async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
    """Pages send the browser to sign in; the API and live streams answer 401."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": "sign in first"}, status_code=401)
    if LIVE_PARAM in request.query_params:
        return PlainTextResponse("sign in first\n", status_code=401)
    return RedirectResponse("/signin", status_code=303)
