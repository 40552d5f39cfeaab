"""The CLI's settings: `[tool.fdbsync]` in the project's pyproject.toml, overridden by the
environment and the command line.

    [tool.fdbsync]
    url = "sqlite:///var/fdbsync.db"   # --url > $FDBSYNC_URL > this > the engine's default
    models = "app.models"              # "module" or "module:attribute"
    migrations = "migrations"          # the revisions folder
    multi_tenant = false

The pyproject.toml is the nearest one from the current directory upwards (or `--config`). Paths
in it (the migrations folder, a relative sqlite file) are relative to its folder, so commands
work from any subfolder of the project.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
import tomllib
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from ..data.model import Model
from ..engine.base import Engine
from ..engine.url import ENV_VAR, create_engine
from .errors import CliError

__all__ = ["SETTINGS", "Config", "find_pyproject", "load_config", "load_models", "opened"]

#: Each setting and the type it must have.
SETTINGS: dict[str, type] = {"url": str, "models": str, "migrations": str, "multi_tenant": bool}


@dataclass(frozen=True)
class Config:
    """Resolved settings. `url` None means the engine's default (sqlite:///var/fdbsync.db)."""

    root: Path
    pyproject: Path | None
    url: str | None
    models: str | None
    migrations: Path
    multi_tenant: bool

    def load_models(self) -> list[type[Model]]:
        """The configured models (CliError when none are configured or they do not import)."""
        if self.models is None:
            where = self.pyproject or "pyproject.toml"
            raise CliError(f'no models configured: set models = "package.module" in {where}')
        return load_models(self.models, self.root)

    def create_engine(self) -> Engine:
        """The engine at `url`, not yet open."""
        try:
            return create_engine(self.url)
        except ValueError as error:
            raise CliError(f"bad engine URL: {error}") from None

    def engine(self) -> AbstractAsyncContextManager[Engine]:
        """The engine at `url`, open for the block and closed after it."""
        return opened(self.create_engine())


@asynccontextmanager
async def opened(engine: Engine) -> AsyncIterator[Engine]:
    """`engine`, open for the block and always closed after it. A file the sqlite engine
    cannot use fails with sqlite3's own error on opening: shown as one line too."""
    try:
        await engine.open()
    except sqlite3.Error as error:
        raise CliError(f"cannot open {engine.url}: {error}") from None
    try:
        yield engine
    finally:
        await engine.close()


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in `start` or a folder above it."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_table(path: Path, *, required: bool) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise CliError(f"{path}: not valid TOML ({error})") from None
    tool = document.get("tool", {})
    table = tool.get("fdbsync") if isinstance(tool, dict) else None
    if table is None:
        if required:
            raise CliError(f"{path} has no [tool.fdbsync] table")
        return {}
    if not isinstance(table, dict):
        raise CliError(f"{path}: tool.fdbsync must be a table")
    for name, value in table.items():
        expected = SETTINGS.get(name)
        if expected is None:
            known = ", ".join(SETTINGS)
            raise CliError(f"{path}: [tool.fdbsync] has no setting {name!r} (settings: {known})")
        if not isinstance(value, expected):
            kind = "true or false" if expected is bool else "a string"
            raise CliError(f"{path}: [tool.fdbsync] {name} must be {kind}, not {value!r}")
    return table


def _anchored(url: str, root: Path) -> str:
    """A relative sqlite file in the pyproject is relative to the pyproject's folder."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        return url
    path = parts.path[1:]
    if not path or path.startswith("/"):
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"sqlite:///{root / path}{query}"


def load_config(
    config: Path | None = None,
    url: str | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Settings from `config` (else the nearest pyproject.toml), `url` and the environment."""
    environ = os.environ if environ is None else environ
    if config is not None:
        if not config.is_file():
            raise CliError(f"no config file at {config}")
        pyproject: Path | None = config.resolve()
        table = _read_table(config, required=True)
    else:
        pyproject = find_pyproject((cwd or Path.cwd()).resolve())
        table = {} if pyproject is None else _read_table(pyproject, required=False)
    root = pyproject.parent if pyproject is not None else (cwd or Path.cwd()).resolve()
    configured = table.get("url")
    chosen = url or environ.get(ENV_VAR) or (configured and _anchored(configured, root)) or None
    return Config(
        root=root,
        pyproject=pyproject,
        url=chosen,
        models=table.get("models"),
        migrations=root / table.get("migrations", "migrations"),
        multi_tenant=table.get("multi_tenant", False),
    )


def load_models(spec: str, root: Path | None = None) -> list[type[Model]]:
    """The models `spec` names: every Model subclass of a module ("pkg.models"), or an
    attribute ("pkg.models:MODELS") holding a model, a list of models or a module. `root` (the
    project's folder) goes on sys.path first, as the project's own code expects."""
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CliError(f"models = {spec!r}: cannot import {module_name!r}: {error}") from None
    except Exception as error:
        raise CliError(
            f"models = {spec!r}: importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    found: Any = module
    if attribute:
        if not hasattr(module, attribute):
            raise CliError(f"models = {spec!r}: {module_name} has no attribute {attribute!r}")
        found = getattr(module, attribute)
    models = _models_in(found, spec)
    if not models:
        raise CliError(f"models = {spec!r}: no fdbsync Model subclasses found there")
    return models


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, Model) and value is not Model


def _models_in(found: Any, spec: str) -> list[type[Model]]:
    if isinstance(found, ModuleType):
        candidates = list(vars(found).values())
    elif _is_model(found):
        candidates = [found]
    elif isinstance(found, list | tuple):
        wrong = [item for item in found if not _is_model(item)]
        if wrong:
            raise CliError(f"models = {spec!r}: {wrong[0]!r} is not a fdbsync Model class")
        candidates = list(found)
    else:
        raise CliError(f"models = {spec!r}: expected a module, a model or a list of models")
    unique: dict[type[Model], None] = {}
    for candidate in candidates:
        if _is_model(candidate):
            unique[candidate] = None
    return list(unique)
