"""`make run`'s app, served by a real uvicorn on 127.0.0.1, reads and writes through the engine."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "FDBSYNC_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(base + "/")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("uvicorn did not start serving within 10 s")
        yield base
    finally:
        process.terminate()
        await process.wait()


def shown_count(html: str) -> int:
    match = re.search(r'id="count">(\d+)<', html)
    assert match, html
    return int(match.group(1))


async def test_counter_page_counts_through_the_engine(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, follow_redirects=True) as client:
        first = await client.get("/")
        assert first.status_code == 200
        before = shown_count(first.text)
        await asyncio.gather(*(client.post("/increment") for _ in range(5)))
        after = shown_count((await client.get("/")).text)
    assert after == before + 5
