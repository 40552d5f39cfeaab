"""Signing in and out. Signing out deletes the SignIn, which ends the account's live streams
on every worker: their pages follow it (see pages.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from .accounts import ACCOUNTS, DEMO_PASSWORD, authenticate
from .models import SignIn
from .security import CurrentViewer, SignInRequired, check_csrf, current_viewer
from .store import repo, templates

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    try:
        viewer = await current_viewer(request)
    except SignInRequired:
        return RedirectResponse("/signin", status_code=303)
    return RedirectResponse(f"/t/{viewer.account.tenant}/people", status_code=303)


def _signin_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    context = {"accounts": ACCOUNTS.values(), "password": DEMO_PASSWORD, "error": error}
    return templates.TemplateResponse(request, "signin.html", context, status_code=status_code)


@router.get("/signin", response_class=HTMLResponse)
async def signin_form(request: Request) -> Response:
    return _signin_page(request)


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request, email: Annotated[str, Form()], password: Annotated[str, Form()]
) -> Response:
    account = authenticate(email, password)
    if account is None:
        return _signin_page(request, "Wrong email or password.", status_code=401)
    record = await repo.tenants.bind(account.tenant).insert(SignIn(account=account.email))
    request.session.clear()
    request.session.update(account=account.email, signin=record.id)
    return RedirectResponse(f"/t/{account.tenant}/people", status_code=303)


@router.post("/signout")
async def signout(request: Request, viewer: CurrentViewer) -> Response:
    await check_csrf(request, viewer)
    tenant_repo = repo.tenants.bind(viewer.account.tenant)
    if await tenant_repo.get(SignIn, viewer.signin) is not None:
        await tenant_repo.delete_by_key(SignIn, viewer.signin)
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)
