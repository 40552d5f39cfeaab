"""Who is asking, and may they: sign-in by a signed session cookie, tenant checks, and CSRF.

The session cookie (Starlette's SessionMiddleware, signed with the app's secret key) names the
account and its SignIn record. Every request, page or live stream, checks both: a cookie
edited by hand fails its signature, and a signed-out SignIn no longer counts.

CSRF: every unsafe request must carry the token derived from its SignIn, either in the
`X-CSRF-Token` header (htmx requests: static/app.js adds it from `<meta name="csrf-token">`
for htmx 2 and htmx 4; JSON API clients send it themselves) or in a form's `csrf_token`
field (plain forms). The cookie is SameSite=Lax as well.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from .accounts import ACCOUNTS, Account
from .config import secret_key
from .models import SignIn
from .store import repo

SECRET = secret_key()
SESSION_COOKIE = "fdbsync_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Exception):
    """No valid sign-in: pages redirect to /signin, the API and streams answer 401."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in account and its SignIn."""

    account: Account
    signin: str
    csrf: str


def csrf_token(signin: str) -> str:
    return hmac.new(SECRET.encode(), f"csrf:{signin}".encode(), hashlib.sha256).hexdigest()


async def current_viewer(request: Request) -> Viewer:
    email, signin = request.session.get("account"), request.session.get("signin")
    account = ACCOUNTS.get(email) if isinstance(email, str) else None
    if account is None or not isinstance(signin, str):
        raise SignInRequired
    if await repo.tenants.bind(account.tenant).get(SignIn, signin) is None:
        raise SignInRequired  # signed out (perhaps in another tab or worker)
    return Viewer(account, signin, csrf_token(signin))


async def viewer_of_tenant(
    tenant: str, viewer: Annotated[Viewer, Depends(current_viewer)]
) -> Viewer:
    """The viewer, if their account belongs to `tenant` (the path's); 403 otherwise."""
    if viewer.account.tenant != tenant:
        raise HTTPException(403, f"{viewer.account.email} has no access to tenant {tenant!r}")
    return viewer


async def writer_of_tenant(
    request: Request, viewer: Annotated[Viewer, Depends(viewer_of_tenant)]
) -> Viewer:
    """The viewer of `tenant`, for an unsafe request that carries their CSRF token."""
    await check_csrf(request, viewer)
    return viewer


async def check_csrf(request: Request, viewer: Viewer) -> None:
    if request.method in _SAFE:
        return
    sent = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if sent is None and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, viewer.csrf):
        raise HTTPException(403, "missing or wrong CSRF token")


ViewerOfTenant = Annotated[Viewer, Depends(viewer_of_tenant)]
WriterOfTenant = Annotated[Viewer, Depends(writer_of_tenant)]
CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
