"""Waiting for sessions without fixed sleeps: conditions polled with a deadline, and bounded
"nothing comes" checks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import pytest

from fdbsync.sync import LiveSession

#: How long something that must happen may take (it normally takes milliseconds).
WITHIN_S = 5.0
#: How long a "nothing comes" check waits.
QUIET_S = 0.3


async def next_change(changes: AsyncIterator[set[str]], within: float = WITHIN_S) -> set[str]:
    """The labels of the next change `updates()` yields (failing the test if none comes)."""
    return await asyncio.wait_for(anext(changes), within)


async def nothing_comes(session: LiveSession) -> None:
    """The hub brings `session` no news within QUIET_S. Waits on `next_ready()`, whose
    cancellation leaves the session as it was (unlike `updates()`, which it would close)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(session.next_ready(), QUIET_S)


async def apply_next(session: LiveSession, within: float = WITHIN_S) -> None:
    """Wait for the session's next Ready and apply it."""
    ready = await asyncio.wait_for(session.next_ready(), within)
    assert await session.handle_ready(ready)


class Consumer:
    """Runs `async for changed in session.updates()` in a task, keeping what it yields and,
    with `snapshot`, a snapshot of the assigns after each change."""

    def __init__(
        self, session: LiveSession, snapshot: Callable[[dict[str, Any]], Any] | None = None
    ) -> None:
        self.session = session
        self.changes: list[set[str]] = []
        self.snapshots: list[Any] = []
        self._snapshot = snapshot
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async for changed in self.session.updates():
            self.changes.append(changed)
            if self._snapshot is not None:
                self.snapshots.append(self._snapshot(self.session.assigns))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def close(changes: AsyncIterator[set[str]]) -> None:
    """Leave a session's `updates()` (an async generator, which closes the session)."""
    assert isinstance(changes, AsyncGenerator)
    await changes.aclose()
