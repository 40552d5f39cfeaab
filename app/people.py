"""What the app does to a tenant's people, shared by the pages and the JSON API."""

from __future__ import annotations

from fastapi import HTTPException

from fdbsync import Repo

from .models import Person, Pin


async def existing(tenant_repo: Repo, person_id: str) -> Person:
    """The person with this id; 404 if there is none."""
    person = await tenant_repo.get(Person, person_id)
    if person is None:
        raise HTTPException(404, f"no person {person_id!r}")
    return person


async def delete(tenant_repo: Repo, person_id: str) -> None:
    """Delete the person and their pin, in one transaction; 404 if there is no such person."""

    async def both(tx: Repo) -> None:
        await existing(tx, person_id)
        if await tx.get(Pin, person_id) is not None:
            await tx.delete_by_key(Pin, person_id)
        await tx.delete_by_key(Person, person_id)

    await tenant_repo.transaction(both)
