"""`@transactional`: FDB's decorator, for functions that take an engine or a transaction."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from .base import Engine, Transaction

P = ParamSpec("P")
T = TypeVar("T")


def transactional(
    fn: Callable[Concatenate[Transaction, P], Awaitable[T]],
) -> Callable[Concatenate[Engine | Transaction, P], Awaitable[T]]:
    """Let `fn(tr, ...)` be called with an engine or a transaction, as `@fdb.transactional`.

    Given an engine, it runs in a new transaction with `Engine.transact`'s retry loop and
    commits; given a transaction, it joins it, and the caller commits.
    """

    @functools.wraps(fn)
    async def run(where: Engine | Transaction, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if isinstance(where, Transaction):
            return await fn(where, *args, **kwargs)
        return await where.transact(lambda tr: fn(tr, *args, **kwargs))

    return run
