"""Running a transaction's reads together, so the engine can pipeline them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def gather_all(*awaitables: Awaitable[Any]) -> list[Any]:
    """Await every awaitable concurrently; raise the first failure in argument order.

    Unlike a plain `asyncio.gather`, nothing is left running when one fails: the transaction
    attempt they belong to is about to be reset or abandoned, and a read still in flight
    would fail later with no one to see it.
    """
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
