"""Revision files: the chain they form, and the errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdbsync.migrate import History, MigrationError, revision_file

from .conftest import PEOPLE, UPPER, Write


def test_the_chain_runs_from_root_to_head(folder: Path, write: Write) -> None:
    write("2_upper.py", UPPER)  # file names do not decide the order: down_revision does
    write("1_people.py", PEOPLE)
    history = History.load(folder)
    assert [revision.id for revision in history.revisions] == ["a1", "b2"]
    assert history.head == "b2"
    assert history.get("b").message == "upper-case names"  # a unique prefix is enough
    assert history.resolve("head") == "b2"
    assert history.resolve("base") is None
    assert history.steps(None, "head") == ("upgrade", history.revisions)
    assert history.steps("b2", "a1") == ("downgrade", [history.revisions[1]])
    assert history.steps("b2", "base") == ("downgrade", history.revisions[::-1])
    assert history.steps("a1", "a1") == ("upgrade", [])


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"x.py": PEOPLE.replace('"a1"\ndown', '"x"\ndown'), "y.py": PEOPLE}, "branch at the base"),
        ({"a.py": PEOPLE, "b.py": UPPER.replace('"a1"', '"zz"')}, "'zz' is missing"),
        ({"a.py": PEOPLE, "b.py": PEOPLE}, "'a1' appears twice"),
        ({"a.py": "revision = 'a'\n"}, "needs down_revision, upgrade, downgrade"),
        ({"a.py": "def upgrade(:"}, "a.py: SyntaxError"),
    ],
)
def test_broken_folders_are_reported_by_name(
    folder: Path, write: Write, files: dict[str, str], message: str
) -> None:
    for name, source in files.items():
        write(name, source)
    with pytest.raises(MigrationError, match=message):
        History.load(folder)


def test_a_branch_above_the_base_names_its_parent(folder: Path, write: Write) -> None:
    write("a.py", PEOPLE)
    write("b.py", UPPER)
    write("c.py", UPPER.replace('"b2"', '"c3"'))
    with pytest.raises(MigrationError, match=r"branch at revision 'a1': b\.py, c\.py"):
        History.load(folder)


def test_unknown_revisions_and_folders(tmp_path: Path, folder: Path, write: Write) -> None:
    write("a.py", PEOPLE)
    history = History.load(folder)
    with pytest.raises(MigrationError, match="unknown revision 'nope'"):
        history.steps(None, "nope")
    with pytest.raises(MigrationError, match="no migrations folder"):
        History.load(tmp_path / "missing")
    assert History.load(tmp_path / "migrations").head == "a1"


def test_a_written_revision_file_loads_back(folder: Path) -> None:
    text = revision_file("c0ffee00", None, "first", ['op.create_index("people", "email")'], [])
    (folder / "c0ffee00_first.py").write_text(text)
    (revision,) = History.load(folder).revisions
    assert (revision.id, revision.down, revision.message) == ("c0ffee00", None, "first")


def test_a_message_with_quotes_makes_a_loadable_file(folder: Path) -> None:
    message = 'say "hi" and \\ """ end"'
    (folder / "x.py").write_text(revision_file("abc", None, message, [], []))
    (revision,) = History.load(folder).revisions
    assert revision.message == message
