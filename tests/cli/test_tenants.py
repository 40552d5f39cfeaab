"""`fdbsync tenants list|create|delete`."""

from __future__ import annotations

from fdbsync.migrate import History

from .conftest import Project, sections


def test_list_create_delete(project: Project) -> None:
    project.configure(multi_tenant=True)
    assert project.ok("tenants", "list").stdout == ""
    assert project.ok("tenants", "create", "globex").stdout.strip() == "created tenant 'globex'"
    project.ok("tenants", "create", "acme")
    assert project.ok("tenants", "list").stdout.splitlines() == ["acme", "globex"]
    project.fails("tenants", "create", "acme", expect="tenant 'acme' already exists")
    project.fails("tenants", "create", "bad name", expect="tenant name 'bad name'")

    refused = project.run("tenants", "delete", "acme", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert project.ok("tenants", "list").stdout.splitlines() == ["acme", "globex"]
    project.ok("tenants", "delete", "acme", input="y\n")
    assert project.ok("tenants", "list").stdout.splitlines() == ["globex"]
    assert project.ok("tenants", "delete", "--yes", "globex").stdout.strip() == (
        "deleted tenant 'globex'"
    )
    assert project.ok("tenants", "list").stdout == ""
    assert project.keys() == {}
    project.fails("tenants", "delete", "-y", "acme", expect="tenant 'acme' does not exist")


def test_create_with_upgrade_brings_the_tenant_to_head(project: Project) -> None:
    project.configure(multi_tenant=True)
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    head = History.load(project.root / "migrations").head
    result = project.ok("tenants", "create", "acme", "--upgrade")
    assert f"acme: upgraded to {head}" in result.stdout
    assert project.ok("current", "--tenant", "acme").stdout.strip().endswith("(head)")
    assert len(sections(project.keys(), "acme")["s"]) == 5  # four index states + migration


def test_single_tenant_project_has_no_tenants(project: Project) -> None:
    project.fails("tenants", "list", expect="this project is single-tenant")
    project.fails("tenants", "create", "acme", expect="this project is single-tenant")
