"""A throwaway project for the CLI: a pyproject.toml with [tool.fdbsync], a models module and a
migrations folder in a tmp dir, run through typer's CliRunner from that dir."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fdbsync.cli import app
from fdbsync.data import Repo
from fdbsync.engine import KeyValue, Transaction, create_engine

PEOPLE = """
from pydantic import Field

from fdbsync import Index, Model, SchemaMetadata, new_id


class Person(
    Model,
    source="people",
    indexes=[{indexes}],
):
    id: str = Field(default_factory=new_id)
    name: str
    email: str
    team: str
"""

INDEXES = 'Index("email"), Index("team"), SchemaMetadata(), SchemaMetadata(by=("team",))'


def people_module(indexes: str = INDEXES) -> str:
    return PEOPLE.format(indexes=indexes)


async def read_all(url: str) -> dict[bytes, bytes]:
    """Every key-value pair of the database at `url`."""
    async with create_engine(url) as engine:
        pairs: dict[bytes, bytes] = {}
        begin = b""
        while True:

            async def page(tr: Transaction, start: bytes = begin) -> list[KeyValue]:
                return await tr.get_range(start, b"\xff", limit=1000).to_list()

            rows = await engine.transact(page)
            if not rows:
                return pairs
            pairs.update((row.key, row.value) for row in rows)
            begin = rows[-1].key + b"\x00"


@dataclass
class Project:
    root: Path
    module: str
    url: str
    runner: CliRunner

    def configure(self, **settings: Any) -> None:
        """Write pyproject.toml with these [tool.fdbsync] settings (defaults: url, models)."""
        values = {"url": self.url, "models": self.module, "migrations": "migrations", **settings}
        lines = ['[project]\nname = "demo"\n\n[tool.fdbsync]']
        for name, value in values.items():
            shown = str(value).lower() if isinstance(value, bool) else f'"{value}"'
            lines.append(f"{name} = {shown}")
        (self.root / "pyproject.toml").write_text("\n".join(lines) + "\n")

    def write_models(self, text: str) -> None:
        (self.root / f"{self.module}.py").write_text(text)
        sys.modules.pop(self.module, None)  # the next command imports the new text

    def models(self) -> list[Any]:
        module = __import__(self.module)
        return [module.Person]

    def run(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(app, list(args), input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    def fails(self, *args: str, expect: str) -> str:
        """Run a command that must fail with one line on stderr containing `expect`."""
        result = self.run(*args)
        assert result.exit_code != 0, result.output
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), result.exception
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), lines
        assert expect in lines[0], lines[0]
        return lines[0]

    def migrations(self) -> list[Path]:
        folder = self.root / "migrations"
        return sorted(folder.glob("*.py")) if folder.is_dir() else []

    def keys(self, url: str | None = None) -> dict[bytes, bytes]:
        return asyncio.run(read_all(url or self.url))

    def repo_call(self, fn: Any, *, multi_tenant: bool = False, url: str | None = None) -> Any:
        """`await fn(repo)` on a fresh engine and repo over the project's models."""

        async def call() -> Any:
            async with create_engine(url or self.url) as engine:
                return await fn(Repo(engine, models=self.models(), multi_tenant=multi_tenant))

        return asyncio.run(call())


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A single-tenant project with the Person model and no migrations yet."""
    monkeypatch.delenv("FDBSYNC_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # restores sys.path (and what the CLI adds)
    module = f"cli_models_{uuid.uuid4().hex[:10]}"
    made = Project(tmp_path, module, f"sqlite:///{tmp_path / 'main.db'}", CliRunner())
    made.configure()
    made.write_models(people_module())
    yield made
    sys.modules.pop(module, None)


def sections(pairs: dict[bytes, bytes], tenant: str = "") -> dict[str, list[tuple[Any, ...]]]:
    """The tenant's keys as tuples, by section ("r", "i", "m", "s", "u")."""
    from fdbsync.engine import unpack

    found: dict[str, list[tuple[Any, ...]]] = {}
    for key in pairs:
        elements = unpack(key)
        if elements[0] == tenant:
            found.setdefault(elements[1], []).append(elements[2:])
    return found


def names(rows: Sequence[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """(source, index) of index entries or counters."""
    return {row[:2] for row in rows}
