"""The people page's sessions, driven directly on the seeded database (no server): what the
page relies on from `LiveSession`.

The page follows the pins with `All` and, in a `handle_assigns` callback, syncs the pinned
people with `Many` (README: "a callback may sync in turn, for example `sync_many` the ids a
`sync_all` label lists"). The stream renders the labels `updates()` yields.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from app.models import Person, Pin, SignIn
from fdbsync import All, LiveSession, Many, Repo, create_engine


async def sync_pinned(session: LiveSession, old: dict[str, Any]) -> None:
    """As app/pages.py does: the pinned people, in the pins' order."""
    if "pins" in old or not session.watching("pinned"):
        pins = sorted(session.assigns["pins"], key=lambda pin: pin.pinned_at)
        await session.sync([Many("pinned", Person, [pin.id for pin in pins])])


def names(people: list[Person]) -> list[str]:
    return [person.name for person in people]


@pytest.fixture
def db(seeded_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "app.db"
    with sqlite3.connect(seeded_db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


async def follow_pins(session: LiveSession) -> None:
    session.private["tenant"] = "acme"
    await session.sync([All("pins", Pin)])
    await sync_pinned(session, {})
    session.attach_callback("pinned", "handle_assigns", sync_pinned)


async def test_a_callback_keeps_the_pinned_people_current(db: Path) -> None:
    async with create_engine(f"sqlite:///{db}") as engine:
        repo = Repo(engine, models=[Person, Pin, SignIn], multi_tenant=True)
        acme = repo.tenants.bind("acme")
        bob = await acme.get_by(Person, {"email": "bob@acme.test"})
        assert bob is not None
        async with LiveSession(repo) as session:
            await follow_pins(session)
            assert names(session.assigns["pinned"]) == ["Ada Lovelace"]
            updates = session.updates()
            await acme.insert(Pin(id=bob.id))
            async with asyncio.timeout(10):
                changed = await anext(updates)
            assert "pins" in changed
            assert names(session.assigns["pinned"]) == ["Ada Lovelace", "Bob Kahn"]
            # A pinned person's record changes: the Many label itself reports it.
            await acme.update(bob, {"name": "Robert Kahn"})
            async with asyncio.timeout(10):
                changed = await anext(updates)
            assert changed == {"pinned"}
            assert names(session.assigns["pinned"]) == ["Ada Lovelace", "Robert Kahn"]


async def test_updates_yield_the_label_a_callback_synced(db: Path) -> None:
    async with create_engine(f"sqlite:///{db}") as engine:
        repo = Repo(engine, models=[Person, Pin, SignIn], multi_tenant=True)
        acme = repo.tenants.bind("acme")
        bob = await acme.get_by(Person, {"email": "bob@acme.test"})
        assert bob is not None
        async with LiveSession(repo) as session:
            await follow_pins(session)
            updates = session.updates()
            await acme.insert(Pin(id=bob.id))
            async with asyncio.timeout(10):
                changed = await anext(updates)
            assert names(session.assigns["pinned"]) == ["Ada Lovelace", "Bob Kahn"]
            assert changed == {"pins", "pinned"}
