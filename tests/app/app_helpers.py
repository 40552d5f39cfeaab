"""Helpers for the example app's tests: the app under real uvicorn in a subprocess, as
`make run` serves it, and signing in over httpx."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from fdbsync.testing import ClientStream, LiveClient

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASSWORD = "demo-password"
#: Every server of the session signs cookies with this key (as every worker must agree on one).
SECRET = "tests-app-" + uuid.uuid4().hex
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(db: Path) -> dict[str, str]:
    env = {**os.environ, "FDBSYNC_URL": f"sqlite:///{db}", "FDBSYNC_SECRET_KEY": SECRET}
    env.pop("FDBSYNC_HTMX", None)  # pages choose by the `htmx` cookie, htmx 4 without it
    return env


def run(env: dict[str, str], *command: str) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


class AppServer:
    """`uvicorn app.main:app` on a database of its own; `stop()` and `start()` again keep the
    port, as a redeploy would."""

    def __init__(self, db: Path, log: Path, workers: int = 1) -> None:
        self.db = db
        self.log = log
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url = f"sqlite:///{db}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._process is None, "already running"
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", str(self.workers),
                    "--timeout-graceful-shutdown", "3",
                ],
                cwd=ROOT, env=env_for(self.db), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_SECONDS
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    pytest.fail(f"uvicorn exited with {self._process.returncode}:\n{self.output}")
                try:
                    if client.get(self.url + "/signin").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # polling for a subprocess to listen: nothing to await
        self.stop()
        pytest.fail(f"uvicorn did not serve within {STARTUP_SECONDS:g} s:\n{self.output}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            pytest.fail(f"uvicorn did not stop within 30 s of SIGTERM:\n{self.output}")

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def errors(self) -> list[str]:
        """The server's logged errors: tracebacks and 5xx answers."""
        text = self.output
        found = [line for line in text.splitlines() if re.search(r'" 5\d\d\b', line)]
        if "Traceback" in text or "Exception in ASGI application" in text:
            found.append(text[text.find("Traceback") :][:4000])
        return found


def server_on_copy(seeded_db: Path, directory: Path, workers: int = 1) -> AppServer:
    """A started server on a fresh copy of the seeded database, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "app.db"
    with sqlite3.connect(seeded_db) as source, sqlite3.connect(db) as target:
        source.backup(target)
    server = AppServer(db, directory / "uvicorn.log", workers)
    server.start()
    return server


def stop_and_check(server: AppServer) -> None:
    """Stop `server`; fail if it logged an error (a traceback or a 5xx answer)."""
    server.stop()
    assert not server.errors(), f"the server logged errors:\n{server.output}"


#: What the `app_server` fixture gives: call it (workers=1) to start a server of one's own.
StartServer = Callable[..., AppServer]


# -- signing in over httpx ---------------------------------------------------------------------


def meta_csrf(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert match, "the page has no <meta name='csrf-token'>"
    return match.group(1)


def stream_url(html: str) -> str:
    match = re.search(r'(?:hx-sse:connect|sse-connect)="([^"]+)"', html)
    assert match, "the page names no live stream"
    return match.group(1).replace("&amp;", "&")


def sign_in(client: httpx.Client, email: str) -> str:
    """Sign `client` in as `email`; the CSRF token its pages carry."""
    answer = client.post("/signin", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    tenant = email.split("@")[1].split(".")[0]
    assert answer.headers["location"] == f"/t/{tenant}/people"
    page = client.get(answer.headers["location"])
    assert page.status_code == 200
    return meta_csrf(page.text)


def unique(prefix: str = "Test") -> str:
    """A name no other test uses (the shared server's data outlives each test)."""
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def person_json(name: str | None = None, team: str = "qa", **changes: Any) -> dict[str, Any]:
    name = name or unique()
    email = name.lower().replace(" ", ".") + "@acme.test"
    return {"name": name, "email": email, "team": team, **changes}


async def sign_in_async(client: httpx.AsyncClient, email: str) -> str:
    """`sign_in` for an async client."""
    answer = await client.post("/signin", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    page = await client.get(answer.headers["location"])
    assert page.status_code == 200
    return meta_csrf(page.text)


async def open_stream(
    stack: AsyncExitStack, client: LiveClient, url: str, first: str
) -> ClientStream:
    """Open a page's live stream (closed with `stack`), and return once the server has sent
    its first message, which holds the fragment `first` (a connect that the server cannot
    match to a render of the page sends every fragment)."""
    stream = await stack.enter_async_context(client.stream(url))
    assert stream.status_code == 200 and stream.is_event_stream, (url, stream.status_code)
    await stream.next_fragment(first, timeout=10)
    return stream


async def shows(stream: ClientStream, fragment: str, text: str) -> None:
    """Return once the stream has sent a `fragment` that holds `text`."""
    await stream.wait_for(fragment, lambda html: text in html, timeout=10)
