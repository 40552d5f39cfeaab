"""Revision files and the chain they form.

A migrations folder holds Python files, each a revision::

    revision = "3f2a9c01"
    down_revision = "a1b2c3d4"   # None for the first
    message = "index people by email"

    def upgrade(op): op.create_index("people", "email")
    def downgrade(op): op.drop_index("people", "email")

The revisions must form one chain from a single root to a single head.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import MigrationError

__all__ = ["History", "Revision", "new_revision_id", "revision_file", "revision_filename"]

Steps = Callable[[Any], None]


@dataclass(frozen=True)
class Revision:
    id: str
    down: str | None
    message: str
    path: Path
    upgrade: Steps
    downgrade: Steps


def _load(path: Path) -> Revision:
    spec = importlib.util.spec_from_file_location(f"fdbsync_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise MigrationError(f"{path}: cannot be loaded as Python")
    module: ModuleType = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise MigrationError(f"{path}: {type(error).__name__}: {error}") from error
    missing = [
        name
        for name in ("revision", "down_revision", "upgrade", "downgrade")
        if not hasattr(module, name)
    ]
    if missing:
        raise MigrationError(f"{path}: a revision file needs {', '.join(missing)}")
    return Revision(
        id=str(module.revision),
        down=None if module.down_revision is None else str(module.down_revision),
        message=str(getattr(module, "message", "")),
        path=path,
        upgrade=module.upgrade,
        downgrade=module.downgrade,
    )


class History:
    """The revisions of one migrations folder, in order from the first to the head."""

    def __init__(self, revisions: list[Revision]) -> None:
        self.revisions = _chain(revisions)
        self._index = {revision.id: i for i, revision in enumerate(self.revisions)}

    @classmethod
    def load(cls, folder: str | Path) -> History:
        folder = Path(folder)
        if not folder.is_dir():
            raise MigrationError(f"no migrations folder at {folder}")
        files = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
        return cls([_load(path) for path in files])

    @property
    def head(self) -> str | None:
        return self.revisions[-1].id if self.revisions else None

    def get(self, revision: str) -> Revision:
        index = self._position(revision)
        return self.revisions[index]

    def _position(self, revision: str | None) -> int:
        """-1 for None (nothing applied), else the revision's place in the chain."""
        if revision is None:
            return -1
        if revision == "head":
            return len(self.revisions) - 1
        if revision not in self._index:
            matches = [r for r in self._index if r.startswith(revision)]
            if len(matches) != 1:
                raise MigrationError(f"unknown revision {revision!r}")
            revision = matches[0]
        return self._index[revision]

    def resolve(self, revision: str | None) -> str | None:
        """The full id of `revision` ("head", a prefix, or an id); None stays None ("base")."""
        if revision in (None, "base"):
            return None
        index = self._position(revision)
        return None if index < 0 else self.revisions[index].id

    def steps(self, current: str | None, target: str | None) -> tuple[str, list[Revision]]:
        """("upgrade", revisions to apply in order) or ("downgrade", revisions to undo in
        order) to go from `current` to `target`."""
        here, there = self._position(current), self._position(self.resolve(target))
        if there >= here:
            return "upgrade", self.revisions[here + 1 : there + 1]
        return "downgrade", list(reversed(self.revisions[there + 1 : here + 1]))


def _chain(revisions: list[Revision]) -> list[Revision]:
    by_id: dict[str, Revision] = {}
    for revision in revisions:
        if revision.id in by_id:
            raise MigrationError(
                f"revision {revision.id!r} appears twice: {by_id[revision.id].path.name} and "
                f"{revision.path.name}"
            )
        by_id[revision.id] = revision
    children: dict[str | None, list[Revision]] = {}
    for revision in revisions:
        if revision.down is not None and revision.down not in by_id:
            raise MigrationError(
                f"{revision.path.name}: its down_revision {revision.down!r} is missing"
            )
        children.setdefault(revision.down, []).append(revision)
    for above, kids in children.items():
        if len(kids) > 1:
            names = ", ".join(kid.path.name for kid in kids)
            where = "the base" if above is None else f"revision {above!r}"
            raise MigrationError(f"the migrations branch at {where}: {names} (make them a chain)")
    ordered: list[Revision] = []
    parent: str | None = None
    while parent in children:
        (child,) = children[parent]
        ordered.append(child)
        parent = child.id
    if len(ordered) != len(revisions):
        raise MigrationError("the migrations do not form one chain from a single root")
    return ordered


def new_revision_id() -> str:
    return secrets.token_hex(4)


def revision_filename(revision: str, message: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "revision"
    return f"{revision}_{slug}.py"


def revision_file(
    revision: str, down: str | None, message: str, upgrade: list[str], downgrade: list[str]
) -> str:
    """The text of a new revision file with these operation lines."""

    def body(lines: list[str]) -> str:
        code = [line for line in lines if not line.lstrip().startswith("#")]
        return "\n".join(f"    {line}" for line in [*lines, *([] if code else ["pass"])])

    return (
        f"{message!r}\n\n"
        f"revision = {revision!r}\n"
        f"down_revision = {down!r}\n"
        f"message = {message!r}\n\n\n"
        f"def upgrade(op):\n{body(upgrade)}\n\n\n"
        f"def downgrade(op):\n{body(downgrade)}\n"
    )
