"""`python -m app.seed`: create the demo tenants and their people on a new database. Tenants that
exist are left alone, so running it again changes nothing. `fdbsync upgrade --all-tenants`
then brings every tenant to the migrations' head (make run does both)."""

from __future__ import annotations

import asyncio

from fdbsync import Repo, create_engine

from .config import TENANTS
from .models import Person, Pin, SignIn

PEOPLE = {
    "acme": [
        ("Ada Lovelace", "ada@acme.test", "engines"),
        ("Bob Kahn", "bob@acme.test", "network"),
        ("Charles Babbage", "charles@acme.test", "engines"),
        ("Dennis Ritchie", "dennis@acme.test", "systems"),
        ("Edsger Dijkstra", "edsger@acme.test", "systems"),
    ],
    "globex": [
        ("Grace Hopper", "grace@globex.test", "compilers"),
        ("Linus Torvalds", "linus@globex.test", "kernel"),
        ("Margaret Hamilton", "margaret@globex.test", "flight"),
        ("Ken Thompson", "ken@globex.test", "kernel"),
    ],
}


async def seed(url: str | None = None) -> list[str]:
    """Create the demo tenants that are missing, with their people; their names."""
    created = []
    async with create_engine(url) as engine:
        repo = Repo(engine, models=[Person, Pin, SignIn], multi_tenant=True)
        for name in TENANTS:
            if await repo.tenants.exists(name):
                continue
            tenant = await repo.tenants.create(name)
            people = await tenant.insert_all(
                [Person(name=n, email=e, team=t) for n, e, t in PEOPLE[name]]
            )
            await tenant.insert(Pin(id=people[0].id))
            created.append(name)
    return created


def main() -> None:
    created = asyncio.run(seed())
    print(f"seeded tenants: {', '.join(created)}" if created else "demo tenants exist")


if __name__ == "__main__":
    main()
