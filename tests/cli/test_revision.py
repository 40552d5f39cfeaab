"""`fdbsync revision` (plain and --autogenerate), `history` and `check`."""

from __future__ import annotations

import re

from fdbsync.cli.autogen import Declared
from fdbsync.data import Index, SchemaMetadata
from fdbsync.migrate import History

from .conftest import INDEXES, Project, people_module

CREATES = [
    "op.create_index('people', 'email')",
    "op.create_index('people', 'team')",
    "op.create_schema_metadata('people')",
    "op.create_schema_metadata('people', by=('team',))",
]
DROPS = [
    "op.drop_schema_metadata('people', by=('team',))",
    "op.drop_schema_metadata('people')",
    "op.drop_index('people', 'team')",
    "op.drop_index('people', 'email')",
]


def body(text: str, function: str) -> list[str]:
    """The statements of `def function(op):` in a revision file."""
    block = text.split(f"def {function}(op):\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_plain_revisions_form_a_chain(project: Project) -> None:
    first = project.ok("revision", "-m", "first step")
    assert "created migrations/" in first.stdout and "after base" in first.stdout
    second = project.ok("revision", "-m", "Second: step!")
    paths = project.migrations()
    assert len(paths) == 2
    history = History.load(project.root / "migrations")
    assert [r.message for r in history.revisions] == ["first step", "Second: step!"]
    one, two = history.revisions
    assert one.down is None and two.down == one.id
    assert f"after {one.id}" in second.stdout
    assert two.path.name == f"{two.id}_second_step.py"
    text = two.path.read_text()
    assert body(text, "upgrade") == ["pass"] and body(text, "downgrade") == ["pass"]


def test_autogenerate_creates_what_the_models_declare_then_nothing(project: Project) -> None:
    result = project.ok("revision", "--autogenerate", "-m", "people indexes")
    for line in CREATES:
        assert line in result.stdout
    (path,) = project.migrations()
    text = path.read_text()
    assert body(text, "upgrade") == CREATES
    assert body(text, "downgrade") == DROPS  # the reverse order
    assert "down_revision = None" in text

    again = project.ok("revision", "--autogenerate", "-m", "again")
    assert "nothing to do" in again.stdout
    assert project.migrations() == [path]


def test_autogenerate_adds_only_what_is_new(project: Project) -> None:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    head = History.load(project.root / "migrations").head
    project.write_models(people_module(INDEXES + ', Index("team", "name")'))
    project.ok("revision", "--autogenerate", "-m", "by team and name")
    history = History.load(project.root / "migrations")
    newest = history.revisions[-1]
    assert newest.down == head
    text = newest.path.read_text()
    assert body(text, "upgrade") == ["op.create_index('people', 'team_name')"]
    assert body(text, "downgrade") == ["op.drop_index('people', 'team_name')"]


def test_autogenerate_counts_drops_and_notes_undeclared_indexes(project: Project) -> None:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    # A hand-written revision drops the team index; the models still declare it.
    project.ok("revision", "-m", "drop team")
    newest = History.load(project.root / "migrations").revisions[-1].path
    assert newest.name.endswith("_drop_team.py")
    text = newest.read_text().replace(
        "def upgrade(op):\n    pass", "def upgrade(op):\n    op.drop_index('people', 'team')"
    )
    text = text.replace(
        "def downgrade(op):\n    pass", "def downgrade(op):\n    op.create_index('people', 'team')"
    )
    newest.write_text(text)
    result = project.ok("revision", "--autogenerate", "-m", "team again")
    assert "op.create_index('people', 'team')" in result.stdout
    # Models that no longer declare the email index: noted, not dropped.
    project.write_models(
        people_module('Index("team"), SchemaMetadata(), SchemaMetadata(by=("team",))')
    )
    result = project.ok("revision", "--autogenerate", "-m", "nothing new")
    assert "people.email, which no model declares" in result.stdout
    assert "nothing to do" in result.stdout


def test_history_lists_revisions_in_order_with_operations(project: Project) -> None:
    assert "no revisions yet" in project.ok("history").stdout
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    project.ok("revision", "-m", "empty one")
    history = History.load(project.root / "migrations")
    first, second = history.revisions
    lines = project.ok("history").stdout.splitlines()
    assert lines[0] == f"{first.id}  people indexes"
    assert lines[1].strip() == f"after base, in {first.path.name}"
    assert lines[2:7] == [
        "    upgrade:",
        "      create people.email",
        "      create people.team",
        "      create people.meta",
        "      create people.meta_by_team",
    ]
    assert "      drop SchemaMetadata people.meta_by_team" in lines
    assert "      drop index people.email" in lines
    last_drop = lines.index("      drop index people.email")
    assert lines.index(f"{second.id}  empty one  (head)") > last_drop
    assert lines[-2:] == ["    downgrade:", "      nothing"]


def test_check_exit_codes(project: Project) -> None:
    missing = project.run("check")
    assert missing.exit_code == 1
    for name in ("index 'email'", "index 'team'", "SchemaMetadata 'meta'", "'meta_by_team'"):
        assert name in missing.stdout
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    assert "ok:" in project.ok("check").stdout
    project.write_models(people_module(INDEXES + ', Index("name")'))
    again = project.run("check")
    assert again.exit_code == 1
    assert re.search(r"Person \(people\) index 'name'", again.stdout)
    assert "'email'" not in again.stdout


def test_check_warns_about_a_downgrade_that_does_not_undo(project: Project) -> None:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    (path,) = project.migrations()
    path.write_text(path.read_text().replace("    op.drop_index('people', 'email')\n", ""))
    result = project.ok("check")
    assert "its downgrade leaves people.email" in result.stdout


def test_generated_lines_for_renamed_indexes() -> None:
    from fdbsync import Model

    class Thing(
        Model,
        source="things",
        indexes=[Index("a", name="by_a"), SchemaMetadata(by=("a",)), SchemaMetadata(name="n")],
    ):
        id: str
        a: str

    by_a, by_team, renamed = (Declared(Thing, i) for i in Thing.__fdbsync__.indexes)
    assert by_a.create_line() == "op.create_index('things', 'by_a')"
    assert by_a.drop_line() == "op.drop_index('things', 'by_a')"
    assert by_team.create_line() == "op.create_schema_metadata('things', by=('a',))"
    assert renamed.create_line() == "op.create_schema_metadata('things', name='n')"
    assert renamed.drop_line() == "op.drop_schema_metadata('things', name='n')"


def test_a_renamed_schema_metadata_alone_round_trips(project: Project) -> None:
    """Autogenerate, upgrade and downgrade a SchemaMetadata declared under its own name: the
    revision loads, and downgrade base leaves none of its keys."""
    project.write_models(people_module('SchemaMetadata(name="counts")'))
    project.ok("revision", "--autogenerate", "-m", "first")
    (written,) = project.migrations()
    assert "op.drop_schema_metadata('people', name='counts')" in written.read_text()
    project.ok("upgrade")
    person = project.models()[0]
    project.repo_call(lambda repo: repo.insert(person(name="a", email="e", team="t")))
    before = project.keys()
    assert any(b"counts" in key for key in before)
    project.ok("downgrade", "base")
    after = project.keys()
    assert not any(b"counts" in key for key in after)
