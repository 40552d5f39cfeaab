"""Waiting for a condition that no event announces (a server's counters, a hub's figures)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["eventually"]


async def eventually(
    condition: Callable[[], bool], what: str = "the condition", *, within: float = 5.0
) -> None:
    """Return once `condition()` holds; AssertionError naming `what` after `within` seconds.

    It looks again after letting the event loop run (at once for the first few looks, so
    what is about to happen is seen without delay, then every 5 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    looks = 0
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"{what} did not happen within {within:g} s")
        looks += 1
        await asyncio.sleep(0 if looks < 20 else 0.005)
