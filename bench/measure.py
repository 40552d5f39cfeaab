"""What the benchmarks share: operations per second, sequential or over concurrent tasks, the
event-loop-to-thread hop the baselines pay, and markdown tables.

The benchmarks run as scripts (`python bench/<name>.py`), so this module is imported by its
plain name from their folder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

Fn = Callable[[int], object]
Op = Callable[[int], Awaitable[None]]


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def run_threaded(fn: Fn, count: int) -> float:
    """`fn(0)` .. `fn(count - 1)` one after the other on this thread; per second."""
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return per_second(count, time.perf_counter() - start)


async def run_tasks(op: Op, count: int, tasks: int) -> float:
    """`op(0)` .. `op(count - 1)` shared among `tasks` concurrent tasks; per second."""
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return per_second(count, time.perf_counter() - start)


def hop(executor: ThreadPoolExecutor, fn: Fn) -> Op:
    """`fn` run from the event loop on a worker thread, as an asyncio app must."""

    async def op(i: int) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, fn, i)

    return op


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
