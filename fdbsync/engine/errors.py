"""FoundationDB's error codes, raised by every engine so callers handle one set of errors."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The FoundationDB error codes fdbsync's engines raise (same numbers as FDB's)."""

    OPERATION_FAILED = 1000
    TRANSACTION_TOO_OLD = 1007
    FUTURE_VERSION = 1009
    NOT_COMMITTED = 1020
    COMMIT_UNKNOWN_RESULT = 1021
    TRANSACTION_CANCELLED = 1025
    TRANSACTION_TIMED_OUT = 1031
    TOO_MANY_WATCHES = 1032
    WATCHES_DISABLED = 1034
    ACCESSED_UNREADABLE = 1036
    PROCESS_BEHIND = 1037
    OPERATION_CANCELLED = 1101
    INVERTED_RANGE = 2005
    KEY_OUTSIDE_LEGAL_RANGE = 2004
    INVALID_OPTION_VALUE = 2006
    RANGE_LIMITS_INVALID = 2012
    CLIENT_INVALID_OPERATION = 2000
    USED_DURING_COMMIT = 2017
    NO_COMMIT_VERSION = 2021
    TRANSACTION_TOO_LARGE = 2101
    KEY_TOO_LARGE = 2102
    VALUE_TOO_LARGE = 2103


_DESCRIPTIONS: dict[int, str] = {
    1000: "Operation failed",
    1007: "Transaction is too old to perform reads or be committed",
    1009: "Request for future version",
    1020: "Transaction not committed due to conflict with another transaction",
    1021: "Transaction may or may not have committed",
    1025: "Operation aborted because the transaction was cancelled",
    1031: "Operation aborted because the transaction timed out",
    1032: "Too many watches currently set",
    1034: "Watches cannot be set if read your writes is disabled",
    1036: "Read or wrote an unreadable key",
    1037: "Storage process does not have recent mutations",
    1101: "Asynchronous operation cancelled",
    2000: "Invalid API call",
    2004: "Key outside legal range",
    2005: "Range begin key larger than end key",
    2006: "Option set with an invalid value",
    2012: "Range limits not valid",
    2017: "Operation issued while a commit was outstanding",
    2021: "Transaction is read-only and therefore does not have a commit version",
    2101: "Transaction exceeds byte limit",
    2102: "Key length exceeds limit",
    2103: "Value length exceeds limit",
}

# Errors after which FDB's on_error() retries the whole transaction.
_RETRYABLE = frozenset({1007, 1009, 1020, 1021, 1037})
# Errors that leave a commit's outcome unknown: retried, but the retried body must be idempotent.
_MAYBE_COMMITTED = frozenset({1021})


class FDBError(Exception):
    """An engine error carrying FoundationDB's numeric code and name.

    `retryable` tells whether a retry loop should run the transaction again;
    `maybe_committed` warns that the failed attempt may nevertheless have committed.
    """

    def __init__(self, code: int, detail: str | None = None) -> None:
        self.code = int(code)
        self.detail = detail
        message = f"{self.name} ({self.code}): {self.description}"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(message)

    @property
    def name(self) -> str:
        try:
            return ErrorCode(self.code).name.lower()
        except ValueError:
            return "unknown_error"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS.get(self.code, "Unknown error")

    @property
    def retryable(self) -> bool:
        return self.code in _RETRYABLE

    @property
    def maybe_committed(self) -> bool:
        return self.code in _MAYBE_COMMITTED

    @property
    def retryable_not_committed(self) -> bool:
        return self.retryable and not self.maybe_committed

    def __reduce__(self) -> tuple[type[FDBError], tuple[int, str | None]]:
        return (type(self), (self.code, self.detail))
