"""Key selectors: FoundationDB's way to name a key relative to another (first >=, last <, ...)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySelector:
    """Selects the key `offset` positions after the last key `<` (or `<=`) `key`.

    Resolution matches FDB: start from the last key less than `key` (less than or equal
    when `or_equal`), then move `offset` keys forward (offset 1 is the next key).
    """

    key: bytes
    or_equal: bool
    offset: int

    @classmethod
    def last_less_than(cls, key: bytes) -> KeySelector:
        return cls(key, False, 0)

    @classmethod
    def last_less_or_equal(cls, key: bytes) -> KeySelector:
        return cls(key, True, 0)

    @classmethod
    def first_greater_than(cls, key: bytes) -> KeySelector:
        return cls(key, True, 1)

    @classmethod
    def first_greater_or_equal(cls, key: bytes) -> KeySelector:
        return cls(key, False, 1)

    def __add__(self, offset: int) -> KeySelector:
        return KeySelector(self.key, self.or_equal, self.offset + offset)

    def __sub__(self, offset: int) -> KeySelector:
        return KeySelector(self.key, self.or_equal, self.offset - offset)


KeyOrSelector = bytes | KeySelector


def as_selector(key: KeyOrSelector) -> KeySelector:
    """A plain key in a range bound means first_greater_or_equal(key), as in FDB."""
    if isinstance(key, KeySelector):
        return key
    return KeySelector.first_greater_or_equal(key)
