"""`fdbsync upgrade`, `downgrade` and `current`, single- and multi-tenant, checked on the raw
keyspace."""

from __future__ import annotations

from typing import Any

from fdbsync.data import Repo
from fdbsync.migrate import History

from .conftest import Project, names, sections

PEOPLE = ("email", "team")
METADATA = ("meta", "meta_by_team")


def add_people(project: Project, count: int, *, tenant: str | None = None) -> None:
    async def insert(repo: Repo) -> None:
        target = repo if tenant is None else repo.tenants.bind(tenant)
        (person,) = project.models()
        await target.insert_all(
            [
                person(name=f"p{n}", email=f"p{n}@example.com", team=("red", "blue")[n % 2])
                for n in range(count)
            ]
        )

    project.repo_call(insert, multi_tenant=tenant is not None)


def reds(project: Project, *, tenant: str | None = None) -> list[str]:
    async def query(repo: Repo) -> Any:
        target = repo if tenant is None else repo.tenants.bind(tenant)
        (person,) = project.models()
        found = await target.all_by(person, {"team": "red"})
        by_email = await target.get_by(person, {"email": "p2@example.com"})
        assert by_email is not None and by_email.name == "p2"
        return sorted(p.name for p in found)

    return project.repo_call(query, multi_tenant=tenant is not None)  # type: ignore[no-any-return]


def test_upgrade_current_downgrade_base_upgrade(project: Project) -> None:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    head = History.load(project.root / "migrations").head
    assert head is not None
    add_people(project, 30)  # stored before the indexes are built
    assert project.ok("current").stdout.startswith("base")

    upgraded = project.ok("upgrade")
    assert f"upgraded to {head} people indexes" in upgraded.stdout
    assert "build people.email: done, 30 records" in upgraded.stderr  # plain progress lines
    assert project.ok("current").stdout.strip() == f"{head} people indexes (head)"
    assert reds(project) == sorted(f"p{n}" for n in range(0, 30, 2))
    built = project.keys()
    keys = sections(built)
    assert names(keys["i"]) == {("people", "email"), ("people", "team")}
    assert names(keys["m"]) == {("people", "meta"), ("people", "meta_by_team")}
    assert sorted(keys["s"]) == [
        ("index", "people", "email"),
        ("index", "people", "meta"),
        ("index", "people", "meta_by_team"),
        ("index", "people", "team"),
        ("migration",),
    ]
    assert "already at" in project.ok("upgrade").stdout

    downgraded = project.ok("downgrade", "base")
    assert f"downgraded {head}" in downgraded.stdout
    assert project.ok("current").stdout.startswith("base")
    after = sections(project.keys())
    assert "i" not in after and "m" not in after  # no index entry or counter left
    assert after["s"] == [("migration",)]  # only the record of being at base
    assert sorted(after["r"]) == sorted(keys["r"])  # the records are untouched
    assert "already at base" in project.ok("downgrade", "base").stdout

    project.ok("upgrade", head[:4])  # a prefix names the revision
    again = project.keys()
    assert sections(again)["i"] == keys["i"]
    assert sorted(sections(again)["s"]) == sorted(keys["s"])
    assert reds(project) == sorted(f"p{n}" for n in range(0, 30, 2))


def test_upgrade_and_downgrade_one_revision_at_a_time(project: Project) -> None:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    project.write_models(
        project.root.joinpath(f"{project.module}.py")
        .read_text()
        .replace('Index("team"),', 'Index("team"), Index("team", "name"),')
    )
    project.ok("revision", "--autogenerate", "-m", "team and name")
    first, second = History.load(project.root / "migrations").revisions
    project.ok("upgrade", first.id)
    assert project.ok("current").stdout.startswith(f"{first.id} people indexes (behind the head")
    assert ("index", "people", "team_name") not in sections(project.keys())["s"]
    upgraded = project.ok("upgrade")
    assert f"upgraded to {second.id}" in upgraded.stdout and first.id not in upgraded.stdout
    project.fails("upgrade", first.id, expect="below the current revision")
    project.ok("downgrade", first.id)
    keys = sections(project.keys())
    assert ("index", "people", "team_name") not in keys["s"]
    assert ("index", "people", "email") in keys["s"]
    project.fails("downgrade", second.id, expect="use upgrade")


def test_multi_tenant_needs_a_tenant_and_moves_each(project: Project) -> None:
    project.configure(multi_tenant=True)
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    head = History.load(project.root / "migrations").head
    project.fails("upgrade", expect="give --tenant NAME or --all-tenants")
    project.fails("current", expect="give --tenant NAME or --all-tenants")
    assert project.ok("upgrade", "--all-tenants").stdout.strip() == "no tenants"
    project.ok("tenants", "create", "acme")
    project.ok("tenants", "create", "globex")
    add_people(project, 10, tenant="acme")

    assert "upgraded to" in project.ok("upgrade", "--tenant", "acme").stdout
    shown = project.ok("current", "--all-tenants").stdout.splitlines()
    assert shown == [f"acme: {head} people indexes (head)", "globex: base (no revision applied)"]
    result = project.ok("upgrade", "--all-tenants")
    assert f"acme: already at {head}" in result.stdout
    assert f"globex: upgraded to {head}" in result.stdout
    assert reds(project, tenant="acme") == ["p0", "p2", "p4", "p6", "p8"]

    project.ok("downgrade", "base", "--tenant", "acme")
    pairs = project.keys()
    assert "i" not in sections(pairs, "acme") and "m" not in sections(pairs, "acme")
    assert sections(pairs, "globex")["s"][-1] == ("migration",)
    assert len(sections(pairs, "globex")["s"]) == 5
    globex = project.ok("current", "--tenant", "globex").stdout.strip()
    assert globex == f"globex: {head} people indexes (head)"
    project.fails("upgrade", "--tenant", "acme", "--all-tenants", expect="not both")
    project.fails("upgrade", "--tenant", "nobody", expect="tenant 'nobody' does not exist")


def test_single_tenant_refuses_tenant_options(project: Project) -> None:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    project.fails("upgrade", "--tenant", "acme", expect="single-tenant")
    project.fails("current", "--all-tenants", expect="single-tenant")


def test_builds_know_their_record_count_from_the_counters(project: Project) -> None:
    """Once SchemaMetadata() is ready, a later index build's progress has a total (an ETA)."""
    import io

    from fdbsync.cli.autogen import plan
    from fdbsync.cli.progress import LogProgress
    from fdbsync.cli.runner import Runner

    project.ok("revision", "--autogenerate", "-m", "people indexes")
    add_people(project, 12)
    project.ok("upgrade")
    project.write_models(
        project.root.joinpath(f"{project.module}.py")
        .read_text()
        .replace('Index("team"),', 'Index("team"), Index("name"),')
    )
    project.ok("revision", "--autogenerate", "-m", "by name")
    history = History.load(project.root / "migrations")

    async def follow(repo: Repo) -> tuple[dict[str, int | None], dict[str, str]]:
        runner = Runner(repo, history, LogProgress(io.StringIO()), print)
        await runner._follow(repo, plan(history.revisions[-1], "upgrade"))
        return runner.callback.totals, runner.callback.names

    totals, labels = project.repo_call(follow)
    assert totals == {"name": 12}
    assert labels == {"name": "build people.name"}
