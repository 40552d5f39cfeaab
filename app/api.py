"""The JSON API: a tenant's people. Same sign-in as the pages; unsafe methods need the
`X-CSRF-Token` header. Bad input gets 422 and writes nothing."""

from __future__ import annotations

from fastapi import APIRouter, Response

from . import people
from .models import Person
from .schemas import PersonId, PersonIn, PersonOut, PersonPatch
from .security import ViewerOfTenant, WriterOfTenant
from .store import repo

router = APIRouter(prefix="/api/t/{tenant}/people", tags=["people"])


def _out(person: Person) -> PersonOut:
    return PersonOut.model_validate(person.model_dump())


@router.get("", response_model=list[PersonOut])
async def list_people(tenant: str, viewer: ViewerOfTenant) -> list[PersonOut]:
    people = await repo.tenants.bind(tenant).all(Person)
    return [_out(person) for person in sorted(people, key=lambda p: (p.name, p.id))]


@router.post("", response_model=PersonOut, status_code=201)
async def create_person(tenant: str, body: PersonIn, viewer: WriterOfTenant) -> PersonOut:
    return _out(await repo.tenants.bind(tenant).insert(Person(**body.model_dump())))


@router.get("/{person_id}", response_model=PersonOut)
async def get_person(tenant: str, person_id: PersonId, viewer: ViewerOfTenant) -> PersonOut:
    return _out(await people.existing(repo.tenants.bind(tenant), person_id))


@router.patch("/{person_id}", response_model=PersonOut)
async def update_person(
    tenant: str, person_id: PersonId, body: PersonPatch, viewer: WriterOfTenant
) -> PersonOut:
    tenant_repo = repo.tenants.bind(tenant)
    person = await people.existing(tenant_repo, person_id)
    return _out(await tenant_repo.update(person, body.model_dump(exclude_none=True)))


@router.put("/{person_id}", response_model=PersonOut)
async def replace_person(
    tenant: str, person_id: PersonId, body: PersonIn, viewer: WriterOfTenant
) -> PersonOut:
    """Store the person in full under this id: creates them again after a delete."""
    person = Person(id=person_id, **body.model_dump())
    return _out(await repo.tenants.bind(tenant).upsert(person))


@router.delete("/{person_id}", status_code=204)
async def delete_person(tenant: str, person_id: PersonId, viewer: WriterOfTenant) -> Response:
    await people.delete(repo.tenants.bind(tenant), person_id)
    return Response(status_code=204)
