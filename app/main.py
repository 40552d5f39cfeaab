"""The example app. For now a single page that proves the engine works end to end: a counter
kept in the engine, bumped with an atomic add. The live example app replaces it in a later
release."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from fdbsync.engine import Transaction, create_engine, pack

ROOT = Path(__file__).resolve().parents[1]
COUNTER = pack(("example", "counter"))

engine = create_engine()
templates = Jinja2Templates(directory=ROOT / "templates")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine:
        yield


app = FastAPI(title="fdbsync example", lifespan=lifespan)
app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")


async def read_counter(tr: Transaction) -> tuple[int, int]:
    raw = await tr.get(COUNTER)
    return int.from_bytes(raw or b"", "little"), await tr.get_read_version()


@app.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    count, version = await engine.transact(read_counter)
    return templates.TemplateResponse(
        request,
        "index.html",
        {"count": count, "version": version, "engine_url": engine.url},
    )


@app.post("/increment")
async def increment() -> RedirectResponse:
    async def bump(tr: Transaction) -> None:
        tr.add(COUNTER, (1).to_bytes(8, "little"))

    await engine.transact(bump)
    return RedirectResponse("/", status_code=303)
