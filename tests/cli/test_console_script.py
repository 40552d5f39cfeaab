"""The installed `fdbsync` console script, run as a real process in a tmp project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Project

SCRIPT = Path(sys.executable).parent / "fdbsync"

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason="the fdbsync script is not installed: pip install -e ."
)


def fdbsync(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FDBSYNC_URL"}
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=project.root / "sub",  # the pyproject is found upwards
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_history_upgrade_current_as_a_process(project: Project) -> None:
    (project.root / "sub").mkdir()
    # Its models module is importable because the project's folder goes on sys.path.
    made = fdbsync(project, "revision", "--autogenerate", "-m", "people indexes")
    assert made.returncode == 0, made.stderr
    assert "op.create_index('people', 'email')" in made.stdout
    history = fdbsync(project, "history")
    assert history.returncode == 0, history.stderr
    assert "people indexes  (head)" in history.stdout
    assert "create people.meta_by_team" in history.stdout
    upgraded = fdbsync(project, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded to" in upgraded.stdout
    assert "build people.email: done" in upgraded.stderr  # stderr is not a terminal: log lines
    current = fdbsync(project, "current")
    assert current.stdout.strip().endswith("people indexes (head)")
    assert (project.root / "main.db").exists()


def test_a_failure_is_one_line_from_the_process(project: Project) -> None:
    (project.root / "sub").mkdir()
    failed = fdbsync(project, "current", "--url", "nosuch://x")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.splitlines() == [
        "error: bad engine URL: nosuch://x: unknown engine scheme 'nosuch' (expected sqlite or fdb)"
    ]
