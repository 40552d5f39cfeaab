"""Migrations: revision files that build and drop indexes and migrate data, tenant by tenant.

Indexes and SchemaMetadata are declared on models; migrations build them, online. The CLI
(`fdbsync upgrade`, ...) drives the same `Migrator`.
"""

from .errors import MigrationError, MigrationRequiredError
from .operations import CreateIndex, DropIndex, MigrateData, Operation, Operations
from .revisions import History, Revision, new_revision_id, revision_file, revision_filename
from .runner import Migrator

__all__ = [
    "CreateIndex",
    "DropIndex",
    "History",
    "MigrateData",
    "MigrationError",
    "MigrationRequiredError",
    "Migrator",
    "Operation",
    "Operations",
    "Revision",
    "new_revision_id",
    "revision_file",
    "revision_filename",
]
