"""Migration errors."""

from __future__ import annotations

from ..data.errors import DataError


class MigrationError(DataError):
    """A migrations folder or a migration that cannot be used as it is: a branch, a missing
    parent, an unknown revision, an operation on an unknown model or index."""


class MigrationRequiredError(MigrationError):
    """A tenant is behind the migrations' head and the repo may not upgrade it by itself."""
