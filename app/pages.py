"""The live pages and the htmx actions behind their buttons and forms.

Live blocks hold no per-viewer data (htmx requests carry the CSRF token in a header), so every
page of a tenant showing the same records shares one render of each fragment.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from fdbsync import All, LiveSession, Many, One, live_sync

from . import people
from .models import Person, Pin, SignIn
from .schemas import PersonId, PersonIn, TeamInPath
from .security import Viewer, ViewerOfTenant, WriterOfTenant
from .store import repo, templates

router = APIRouter()

#: Labels that feed other fragments but show none of their own: pins change the people list
#: (its pin buttons; `_sync_pinned` re-syncs "pinned" itself). People change the list and the
#: teams.
FRAGMENTS: dict[str, Any] = {"signin": None, "pins": "people", "people": ["people", "teams"]}


def _follow(session: LiveSession, viewer: Viewer, tenant: str, **assigns: Any) -> One:
    """Set the page's tenant and viewer; the page's SignIn, to sync with its labels."""
    session.private["tenant"] = tenant
    session.private["account"] = viewer.account.email
    session.assigns.update(viewer=viewer, tenant=tenant, **assigns)
    session.attach_callback("signed-out", "handle_assigns", _end_when_signed_out)
    return One("signin", SignIn, viewer.signin)


def _end_when_signed_out(session: LiveSession, old: dict[str, Any]) -> bool | None:
    """Signing out (in any tab, on any worker) deletes the SignIn: end this page's stream."""
    if "signin" in old and session.assigns.get("signin") is None:
        session.close()
        return False
    return None


async def _sync_pinned(session: LiveSession, old: dict[str, Any]) -> None:
    if "pins" in old or not session.watching("pinned"):
        pins = sorted(session.assigns["pins"], key=lambda pin: pin.pinned_at)
        await session.sync([Many("pinned", Person, [pin.id for pin in pins])])


@router.get("/t/{tenant}/people", response_class=HTMLResponse)
@live_sync("people.html", fragments=FRAGMENTS)
async def people_page(session: LiveSession, tenant: str, viewer: ViewerOfTenant) -> None:
    signin = _follow(session, viewer, tenant, values={}, errors={})
    await session.sync([signin, All("people", Person), All("pins", Pin)])
    await _sync_pinned(session, {})
    session.attach_callback("pinned", "handle_assigns", _sync_pinned)


@router.get("/t/{tenant}/teams/{team}", response_class=HTMLResponse)
@live_sync("team.html", fragments=FRAGMENTS)
async def team_page(
    session: LiveSession, tenant: str, team: TeamInPath, viewer: ViewerOfTenant
) -> None:
    signin = _follow(session, viewer, tenant, team=team)
    await session.sync([signin, All("members", Person, {"team": team})])


def _remember(session: LiveSession, old: dict[str, Any]) -> None:
    """Keep the last version of the person shown, so a deleted person can be restored."""
    if session.assigns.get("person") is not None:
        session.assigns["last_seen"] = session.assigns["person"]


@router.get("/t/{tenant}/people/{person_id}", response_class=HTMLResponse)
@live_sync("person.html", fragments=FRAGMENTS)
async def person_page(
    session: LiveSession, tenant: str, person_id: PersonId, viewer: ViewerOfTenant
) -> None:
    signin = _follow(session, viewer, tenant, person_id=person_id, last_seen=None)
    await session.sync([signin, One("person", Person, person_id)])
    _remember(session, {})
    session.attach_callback("remember", "handle_assigns", _remember)


# -- actions ---------------------------------------------------------------------------------


def _done(request: Request, tenant: str) -> Response:
    """htmx requests need no answer (the live stream shows the change); plain forms go back."""
    if request.headers.get("HX-Request"):
        return Response(status_code=204)
    return RedirectResponse(f"/t/{tenant}/people", status_code=303)


async def _person_form(request: Request) -> tuple[dict[str, str], PersonIn | None, dict[str, str]]:
    """The form's values, the validated person (or None), and an error per field."""
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k in PersonIn.model_fields}
    try:
        return values, PersonIn.model_validate(values), {}
    except ValidationError as error:
        errors = {str(e["loc"][0]): e["msg"] for e in error.errors() if e["loc"]}
        return values, None, errors


@router.post("/t/{tenant}/people", response_class=HTMLResponse)
async def add_person(request: Request, tenant: str, viewer: WriterOfTenant) -> Response:
    values, person, errors = await _person_form(request)
    if person is not None:
        await repo.tenants.bind(tenant).insert(Person(**person.model_dump()))
        values = {}
        if not request.headers.get("HX-Request"):
            return _done(request, tenant)
    context = {"tenant": tenant, "viewer": viewer, "values": values, "errors": errors}
    return templates.TemplateResponse(request, "_add_form.html", context)


@router.get("/t/{tenant}/people/{person_id}/edit", response_class=HTMLResponse)
async def edit_form(
    request: Request, tenant: str, person_id: PersonId, viewer: ViewerOfTenant
) -> Response:
    person = await people.existing(repo.tenants.bind(tenant), person_id)
    context = {"tenant": tenant, "person": person, "values": person.model_dump(), "errors": {}}
    return templates.TemplateResponse(request, "_edit_form.html", context)


@router.post("/t/{tenant}/people/{person_id}/edit", response_class=HTMLResponse)
async def edit_person(
    request: Request, tenant: str, person_id: PersonId, viewer: WriterOfTenant
) -> Response:
    tenant_repo = repo.tenants.bind(tenant)
    person = await people.existing(tenant_repo, person_id)
    values, changes, errors = await _person_form(request)
    if changes is None:
        context = {"tenant": tenant, "person": person, "values": values, "errors": errors}
        return templates.TemplateResponse(request, "_edit_form.html", context)
    await tenant_repo.update(person, changes.model_dump())
    return HTMLResponse("") if request.headers.get("HX-Request") else _done(request, tenant)


@router.post("/t/{tenant}/people/{person_id}/delete")
async def delete_person(
    request: Request, tenant: str, person_id: PersonId, viewer: WriterOfTenant
) -> Response:
    await people.delete(repo.tenants.bind(tenant), person_id)
    return _done(request, tenant)


@router.post("/t/{tenant}/people/{person_id}/pin")
async def pin_person(
    request: Request, tenant: str, person_id: PersonId, viewer: WriterOfTenant
) -> Response:
    tenant_repo = repo.tenants.bind(tenant)
    await people.existing(tenant_repo, person_id)
    await tenant_repo.upsert(Pin(id=person_id), on_conflict="nothing")
    return _done(request, tenant)


@router.post("/t/{tenant}/people/{person_id}/unpin")
async def unpin_person(
    request: Request, tenant: str, person_id: PersonId, viewer: WriterOfTenant
) -> Response:
    tenant_repo = repo.tenants.bind(tenant)
    if await tenant_repo.get(Pin, person_id) is not None:
        await tenant_repo.delete_by_key(Pin, person_id)
    return _done(request, tenant)


@router.post("/t/{tenant}/people/{person_id}/restore")
async def restore_person(
    request: Request, tenant: str, person_id: PersonId, viewer: WriterOfTenant
) -> Response:
    """Create a deleted person again, with the same id (their page shows them again)."""
    _, person, errors = await _person_form(request)
    if person is None:
        raise HTTPException(422, errors)
    await repo.tenants.bind(tenant).upsert(Person(id=person_id, **person.model_dump()))
    if request.headers.get("HX-Request"):
        return Response(status_code=204)
    return RedirectResponse(f"/t/{tenant}/people/{person_id}", status_code=303)


__all__ = ["router"]
