"""Expected failures print one line on stderr, exit non-zero, and show no traceback."""

from __future__ import annotations

import pytest

from fdbsync.migrate import revision_file

from .conftest import Project


def write_revision(project: Project, revision: str, down: str | None, name: str) -> None:
    folder = project.root / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / f"{revision}_{name}.py").write_text(revision_file(revision, down, name, [], []))


def test_branch_in_migrations(project: Project) -> None:
    write_revision(project, "aaaa0001", None, "one")
    write_revision(project, "bbbb0002", None, "two")
    for command in (["history"], ["upgrade"], ["revision", "-m", "x"], ["check"]):
        project.fails(*command, expect="the migrations branch at the base")


def test_missing_parent(project: Project) -> None:
    write_revision(project, "aaaa0001", "deadbeef", "orphan")
    project.fails("upgrade", expect="its down_revision 'deadbeef' is missing")


def test_unknown_revision(project: Project) -> None:
    write_revision(project, "aaaa0001", None, "one")
    project.fails("upgrade", "zzzz", expect="unknown revision 'zzzz'")
    project.fails("downgrade", "zzzz", expect="unknown revision 'zzzz'")


def test_database_at_a_revision_the_folder_lacks(project: Project) -> None:
    write_revision(project, "aaaa0001", None, "one")
    project.ok("upgrade")
    (project.root / "migrations" / "aaaa0001_one.py").unlink()
    write_revision(project, "cccc0003", None, "other")
    project.fails("upgrade", expect="the database is at revision 'aaaa0001', which the")
    assert "aaaa0001 (not in the migrations folder)" in project.ok("current").stdout


def test_revision_file_that_does_not_load(project: Project) -> None:
    write_revision(project, "aaaa0001", None, "one")
    (project.root / "migrations" / "bbbb_broken.py").write_text("revision = \n")
    project.fails("history", expect="bbbb_broken.py: SyntaxError")


def test_multi_tenant_without_a_tenant(project: Project) -> None:
    project.configure(multi_tenant=True)
    write_revision(project, "aaaa0001", None, "one")
    project.fails("downgrade", "base", expect="give --tenant NAME or --all-tenants")


@pytest.mark.parametrize(
    ("url", "expect"),
    [
        ("nosuch://x", "bad engine URL: nosuch://x: unknown engine scheme 'nosuch'"),
        ("sqlite://host/x.db", "bad engine URL"),
        ("sqlite:///x.db?bogus=1", "unknown option(s) bogus"),
        ("fdb://db.example.com:4500", "name a cluster file, not a host"),
    ],
)
def test_bad_url(project: Project, url: str, expect: str) -> None:
    write_revision(project, "aaaa0001", None, "one")
    project.fails("upgrade", "--url", url, expect=expect)
    project.fails("--url", url, "current", expect=expect)  # before the command works too


def test_unusable_database_file(project: Project) -> None:
    (project.root / "not-a-db").write_text("plain text, not SQLite\n" * 100)
    url = f"sqlite:///{project.root / 'not-a-db'}"
    project.fails("current", "--url", url, expect="file is not a database")


def test_models_that_do_not_import(project: Project) -> None:
    write_revision(project, "aaaa0001", None, "one")
    project.write_models("import no_such_module_here\n")
    project.fails("upgrade", expect="cannot import")
    project.write_models("raise RuntimeError('boom')\n")
    project.fails("check", expect="RuntimeError: boom")
    project.write_models("X = 1\n")
    project.fails("revision", "--autogenerate", "-m", "x", expect="no fdbsync Model subclasses")


def test_models_not_configured(project: Project) -> None:
    project.configure(models="")
    (project.root / "pyproject.toml").write_text(
        (project.root / "pyproject.toml").read_text().replace('models = ""\n', "")
    )
    project.fails("check", expect="no models configured")


def test_bad_settings(project: Project) -> None:
    project.configure(colour="blue")
    project.fails("history", expect="has no setting 'colour'")
    project.configure(multi_tenant="yes")
    project.fails("history", expect="multi_tenant must be true or false")
    (project.root / "pyproject.toml").write_text("[tool.fdbsync\n")
    project.fails("history", expect="not valid TOML")
    project.fails("--config", "nowhere.toml", "history", expect="no config file at nowhere.toml")


def test_bad_message(project: Project) -> None:
    project.fails("revision", "-m", "  ", expect="one non-empty line")
    assert project.migrations() == []
    project.ok("revision", "-m", 'say "hi" \\ """')  # quotes are fine: the message is a repr
    (written,) = project.migrations()
    assert "say" in written.read_text()
