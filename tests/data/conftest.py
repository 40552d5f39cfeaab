"""Repos over every engine: single-tenant, and a multi-tenant root with tenants acme and globex."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fdbsync.data import Repo
from fdbsync.engine import Engine

from .models import ALL_MODELS


@pytest.fixture
async def repo(engine: Engine) -> AsyncIterator[Repo]:
    """A single-tenant repo with every test model's indexes built."""
    single = Repo(engine, models=ALL_MODELS)
    for model in ALL_MODELS:
        await single.build_indexes(model)
    yield single


@pytest.fixture
async def root(engine: Engine) -> AsyncIterator[Repo]:
    """A multi-tenant repo (the root: no tenant bound yet)."""
    yield Repo(engine, models=ALL_MODELS, multi_tenant=True)


async def built_tenant(root: Repo, name: str) -> Repo:
    tenant = await root.tenants.create(name)
    for model in ALL_MODELS:
        await tenant.build_indexes(model)
    return tenant


@pytest.fixture
async def acme(root: Repo) -> Repo:
    return await built_tenant(root, "acme")


@pytest.fixture
async def globex(root: Repo) -> Repo:
    return await built_tenant(root, "globex")


@pytest.fixture(params=["single", "tenant"])
def store(request: pytest.FixtureRequest, engine: Engine) -> Repo:
    """The single-tenant repo, or the repo bound to tenant "acme" (asking for `engine` keeps
    the engine parametrization)."""
    repo: Repo = request.getfixturevalue("repo" if request.param == "single" else "acme")
    return repo
