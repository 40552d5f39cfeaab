"""FoundationDB's size and time limits, enforced by every engine so apps behave the same."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits an engine enforces. The defaults are FoundationDB's."""

    key_size: int = 10_000
    value_size: int = 100_000
    transaction_size: int = 10_000_000
    #: Seconds a transaction may live before reads and commits fail with 1007.
    transaction_time: float = 5.0
    #: Pending watches per engine (FDB's max_watches), past which watch() fails with 1032.
    max_watches: int = 10_000
