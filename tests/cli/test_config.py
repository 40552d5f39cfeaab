"""[tool.fdbsync]: where it is found, what overrides it, and how models are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdbsync.cli.config import load_config, load_models
from fdbsync.cli.errors import CliError

from .conftest import Project

ROOT = Path(__file__).resolve().parents[2]


def test_found_upwards_with_paths_relative_to_it(project: Project) -> None:
    project.configure(url="sqlite:///var/app.db", migrations="db/revisions", multi_tenant=True)
    below = project.root / "src" / "deep"
    below.mkdir(parents=True)
    config = load_config(cwd=below, environ={})
    assert config.pyproject == project.root / "pyproject.toml"
    assert config.root == project.root
    assert config.migrations == project.root / "db" / "revisions"
    assert config.url == f"sqlite:///{project.root}/var/app.db"  # anchored at the project
    assert config.models == project.module and config.multi_tenant is True


def test_url_precedence(project: Project) -> None:
    project.configure(url="sqlite:////data/configured.db?max_watches=5")
    env = {"FDBSYNC_URL": "sqlite:///from-env.db"}
    assert load_config(url="sqlite:///given.db", environ=env).url == "sqlite:///given.db"
    assert load_config(environ=env).url == "sqlite:///from-env.db"  # as given: relative to cwd
    assert load_config(environ={}).url == "sqlite:////data/configured.db?max_watches=5"
    (project.root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert load_config(environ={}).url is None  # the engine's default


def test_defaults_without_a_pyproject(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path, environ={})
    assert config.pyproject is None  # none in the tmp dir or above it
    assert config.root == tmp_path and config.migrations == tmp_path / "migrations"
    empty = tmp_path / "p"
    empty.mkdir()
    (empty / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    config = load_config(cwd=empty, environ={})
    assert (config.url, config.models, config.multi_tenant) == (None, None, False)
    assert config.migrations == empty / "migrations"


def test_config_option_overrides_discovery(project: Project, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "pyproject.toml").write_text(
        '[tool.fdbsync]\nmigrations = "m"\nurl = "sqlite:///o.db"\n'
    )
    config = load_config(other / "pyproject.toml", environ={})
    assert config.migrations == other / "m" and config.url == f"sqlite:///{other}/o.db"
    result = project.ok("--config", str(other / "pyproject.toml"), "history")
    assert "no revisions yet" in result.stdout
    (other / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(CliError, match=r"has no \[tool.fdbsync\] table"):
        load_config(other / "pyproject.toml")


def test_models_specs(project: Project) -> None:
    module = project.module
    (person,) = project.models()
    (project.root / "more_models_for_cli.py").write_text(
        f"from {module} import Person\nMODELS = [Person]\nONE = Person\nNOT = [1]\n"
    )
    assert load_models(module) == [person]
    assert load_models("more_models_for_cli:MODELS") == [person]
    assert load_models("more_models_for_cli:ONE") == [person]
    assert load_models("more_models_for_cli") == [person]  # imported models count too
    with pytest.raises(CliError, match="has no attribute 'NOPE'"):
        load_models("more_models_for_cli:NOPE")
    with pytest.raises(CliError, match="1 is not a fdbsync Model class"):
        load_models("more_models_for_cli:NOT")


def test_the_example_app_is_migrated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's own migrations create everything app/models.py declares."""
    from typer.testing import CliRunner

    from fdbsync.cli import app

    monkeypatch.syspath_prepend(str(ROOT))
    result = CliRunner().invoke(app, ["--config", str(ROOT / "pyproject.toml"), "check"])
    assert result.exit_code == 0, result.output
    assert "ok: the migrations create every index the models declare" in result.stdout
