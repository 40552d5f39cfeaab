"""The example app under real uvicorn, as `make run` serves it: a database seeded with
`python -m app.seed` and migrated with `fdbsync upgrade --all-tenants` (once per test session,
then copied for each server), served by `uvicorn app.main:app` in a subprocess.

One server (two workers, like `make run`) is shared by the session's tests, which change only
people they create themselves. Tests that need a database of their own (a screenshot of the
seeded data, generated requests that leave junk behind), a restart, or figures no other test
moves, start their own with `app_server` (or `server_on_copy` in a wider scope).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_helpers import (
    BIN,
    AppServer,
    StartServer,
    env_for,
    run,
    server_on_copy,
    stop_and_check,
)


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database as `make run` prepares it: seeded (once), then migrated."""
    db = tmp_path_factory.mktemp("seeded") / "app.db"
    env = env_for(db)
    assert "seeded tenants: acme, globex" in run(env, sys.executable, "-m", "app.seed")
    assert "demo tenants exist" in run(env, sys.executable, "-m", "app.seed")
    run(env, str(BIN / "fdbsync"), "upgrade", "--all-tenants")
    return db


@pytest.fixture
def app_server(seeded_db: Path, tmp_path: Path) -> Iterator[StartServer]:
    """`app_server(workers=1)` starts a server on a fresh copy of the seeded database; every
    server started is stopped at teardown, which fails if one logged an error."""
    servers: list[AppServer] = []

    def start(workers: int = 1) -> AppServer:
        server = server_on_copy(seeded_db, tmp_path / f"server-{len(servers)}", workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        stop_and_check(server)


@pytest.fixture(scope="session")
def shared_server(seeded_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's shared server (two workers, as `make run` starts); its base URL."""
    server = server_on_copy(seeded_db, tmp_path_factory.mktemp("shared"), workers=2)
    try:
        yield server.url
    finally:
        stop_and_check(server)
