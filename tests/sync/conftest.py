"""Fixtures for the sync tests: the data layer's repos (each over every engine, through the
`engine` fixture), the engine's watch hub, and a few stored people."""

from __future__ import annotations

import pytest
from data.conftest import acme, globex, repo, root
from data.models import Person, person

from fdbsync.data import Repo
from fdbsync.engine import Engine
from fdbsync.sync import WatchHub, hub_for

__all__ = ["acme", "globex", "hub", "people", "repo", "root"]


@pytest.fixture
async def hub(engine: Engine) -> WatchHub:
    """The engine's hub on the test's event loop (the one every session here uses)."""
    return hub_for(engine)


@pytest.fixture
async def people(repo: Repo) -> list[Person]:
    """Ada, Bob and Cy (red team) and Dee (blue team), stored in the single-tenant repo."""
    return [
        await repo.insert(person("ada")),
        await repo.insert(person("bob")),
        await repo.insert(person("cy")),
        await repo.insert(person("dee", team="blue")),
    ]
