"""A child process for tests/data/test_builds.py: index builds from another OS process.

Run as::

    python -u tests/data/_build_worker.py <url> <openings> <batch_size> <claim_timeout> <wait>

It prints `started`, then runs `openings` openings at once: each opens its own engine on `url`
and its own Repo, and calls `build_indexes(Ranked, ...)` with the given arguments. It prints

    progress <opening> <index> <done>    after each batch that opening committed
    built <opening> <index,...|->        when the opening's call returned (- for none)
    failed <opening> <repr>              when it raised

and exits 0 when every opening returned, 1 otherwise. The models live here so that the test and
its children agree on them.
"""

from __future__ import annotations

import asyncio
import sys
import traceback

from fdbsync.data import Index, Model, Repo
from fdbsync.engine import create_engine

SOURCE = "test_builds_ranked"


class RankedV0(Model, source=SOURCE):
    """The model as it was before the index was declared: its writes make no entries."""

    id: int
    rank: int
    tag: str = ""


class Ranked(Model, source=SOURCE, indexes=[Index("rank")]):
    """The same records with Index("rank") declared."""

    id: int
    rank: int
    tag: str = ""


def rank_of(primary_key: int) -> int:
    """A rank that does not follow primary-key order (and repeats)."""
    return primary_key * 7919 % 1009


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


async def opening(
    number: int, url: str, batch_size: int, claim_timeout: float, wait: float
) -> bool:
    try:
        async with create_engine(url) as engine:
            repo = Repo(engine, models=[Ranked])
            built = await repo.build_indexes(
                Ranked,
                batch_size=batch_size,
                claim_timeout=claim_timeout,
                wait=wait,
                progress=lambda name, done: say("progress", number, name, done),
            )
    except Exception as error:
        traceback.print_exc()
        say("failed", number, repr(error).replace("\n", " "))
        return False
    say("built", number, ",".join(built) or "-")
    return True


async def main(url: str, openings: int, batch_size: int, claim_timeout: float, wait: float) -> int:
    say("started")
    results = await asyncio.gather(
        *(opening(n, url, batch_size, claim_timeout, wait) for n in range(openings))
    )
    return 0 if all(results) else 1


if __name__ == "__main__":
    url, openings, batch_size, claim_timeout, wait = sys.argv[1:]
    sys.exit(
        asyncio.run(main(url, int(openings), int(batch_size), float(claim_timeout), float(wait)))
    )
