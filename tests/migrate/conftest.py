"""Migrations folders written into tmp dirs, and repos over every engine."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from data.models import ALL_MODELS

from fdbsync.data import Repo
from fdbsync.engine import Engine

Write = Callable[[str, str], Path]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "migrations"
    path.mkdir()
    return path


@pytest.fixture
def write(folder: Path) -> Write:
    """write(name, source): a revision file in the migrations folder."""

    def write_file(name: str, source: str) -> Path:
        path = folder / name
        path.write_text(textwrap.dedent(source))
        return path

    return write_file


PEOPLE = """
revision = "a1"
down_revision = None
message = "people indexes"

def upgrade(op):
    op.create_index("people", "email")
    op.create_index("people", "team_name")
    op.create_schema_metadata("people")
    op.create_schema_metadata("people", by=("team",))

def downgrade(op):
    op.drop_schema_metadata("people", by=("team",))
    op.drop_schema_metadata("people")
    op.drop_index("people", "team_name")
    op.drop_index("people", "email")
"""

UPPER = """
revision = "b2"
down_revision = "a1"
message = "upper-case names"

calls = []

def upgrade(op):
    def up(person):
        calls.append(person.id)
        person.name = person.name.upper()
        return person
    op.migrate_data("people", up, batch_size=3)

def downgrade(op):
    pass
"""


@pytest.fixture
async def root(engine: Engine) -> Repo:
    return Repo(engine, models=ALL_MODELS, multi_tenant=True)
