"""`make run`'s steps on a fresh database: seed, migrate, and serve the example app with two
uvicorn workers. A change through the JSON API reaches live streams whichever worker serves
them, and the demo accounts see their own tenant only."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run(env: dict[str, str], *command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "FDBSYNC_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    assert "seeded tenants: acme, globex" in await run(env, sys.executable, "-m", "app.seed")
    assert "demo tenants exist" in await run(env, sys.executable, "-m", "app.seed")
    await run(env, str(BIN / "fdbsync"), "upgrade", "--all-tenants")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "2", "--timeout-graceful-shutdown", "3",
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                try:
                    if (await client.get(base + "/signin")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("uvicorn did not start serving within 20 s")
        yield base
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


@asynccontextmanager
async def signed_in(base: str, email: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        answer = await client.post("/signin", data={"email": email, "password": "demo-password"})
        assert answer.status_code == 303, answer.text
        yield client


def attribute(html: str, name: str) -> str:
    match = re.search(rf'{re.escape(name)}="([^"]*)"', html)
    assert match, f"no {name} in the page"
    return match.group(1).replace("&amp;", "&")


class Reader:
    """What one stream has sent so far, read on demand."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.chunks = response.aiter_text()
        self.seen = ""

    async def until(self, text: str) -> str:
        async with asyncio.timeout(10):
            while text not in self.seen:
                self.seen += await anext(self.chunks)
        return self.seen


async def test_seeded_pages_and_a_change_through_the_api_reach_every_worker(server: str) -> None:
    async with signed_in(server, "ada@acme.test") as ada:
        page = (await ada.get("/t/acme/people")).text
        assert "Ada Lovelace" in page and "Edsger Dijkstra" in page
        assert "Grace Hopper" not in page  # globex's
        stream_url = attribute(page, "hx-sse:connect")
        csrf = attribute(page, 'name="csrf-token" content')
        # Several streams: with two workers, some are served by the worker that does not
        # take the API request below.
        async with asyncio.TaskGroup() as group:
            streams = [
                await group.create_task(ada.send(ada.build_request("GET", stream_url), stream=True))
                for _ in range(4)
            ]
        try:
            for stream in streams:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
            readers = [Reader(stream) for stream in streams]
            await asyncio.gather(*(reader.until("\r\n\r\n") for reader in readers))
            created = await ada.post(
                "/api/t/acme/people",
                json={"name": "Zed Shaw", "email": "zed@acme.test", "team": "network"},
                headers={"X-CSRF-Token": csrf},
            )
            assert created.status_code == 201, created.text
            await asyncio.gather(*(reader.until("Zed Shaw") for reader in readers))
        finally:
            for stream in streams:
                await stream.aclose()
        metrics = (await ada.get("/metrics")).text
        assert "fdbsync_live_streams" in metrics and "fdbsync_push_latency_seconds" in metrics


async def test_an_account_sees_its_own_tenant_only(server: str) -> None:
    async with signed_in(server, "grace@globex.test") as grace:
        assert (await grace.get("/t/globex/people")).status_code == 200
        other = await grace.get("/t/acme/people")
        assert other.status_code == 403 and "Ada Lovelace" not in other.text
        live = await grace.get("/t/acme/people?fdbsync-live=1")
        assert live.status_code == 403 and "Ada Lovelace" not in live.text
        assert (await grace.get("/api/t/acme/people")).status_code == 403
    async with httpx.AsyncClient(base_url=server) as anonymous:
        assert (await anonymous.get("/t/acme/people")).status_code == 303
        assert (await anonymous.get("/api/t/acme/people")).status_code == 401
