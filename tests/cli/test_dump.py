"""`fdbsync dump` and `load`: identical keyspaces, tenants, bounded transactions, and files
that are refused whole when truncated or corrupted."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from fdbsync.cli import dump as dump_module
from fdbsync.cli.dumpfile import MAGIC, DumpReader
from fdbsync.data import Repo
from fdbsync.engine import pack

from .conftest import Project


def fill(project: Project, *, tenant: str | None = None, small: int = 1500, big: int = 30) -> None:
    """`small` people and `big` ones of about 70 KB stored each (over 1 MB together)."""

    async def insert(repo: Repo) -> None:
        if tenant is not None:
            repo = await repo.tenants.create(tenant)
        (person,) = project.models()
        await repo.insert_all(
            [person(name=f"p{n}", email=f"p{n}@x.org", team=f"t{n % 7}") for n in range(small)]
        )
        for n in range(big):
            name = base64.b64encode(os.urandom(67_000)).decode()  # ~90 KB that zlib cannot shrink
            await repo.insert(person(name=name, email=f"big{n}@x.org", team="big"))

        async def own(tx: Repo) -> None:  # the application's own keys travel too
            tx.transaction_handle.set(tx.keyspace.user("setting"), b"on")

        await repo.transaction(own)

    project.repo_call(insert, multi_tenant=tenant is not None)


def test_dump_and_load_copy_every_key_in_bounded_transactions(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    project.ok("upgrade")
    fill(project)
    source = project.keys()
    assert len(source) > 3 * dump_module.MAX_BATCH_KEYS

    batches: list[tuple[int, int]] = []
    read_batch = dump_module._batch

    async def spy(*args: object) -> object:
        rows = await read_batch(*args)  # type: ignore[arg-type]
        batches.append((len(rows), sum(len(r.key) + len(r.value) for r in rows)))
        return rows

    monkeypatch.setattr(dump_module, "_batch", spy)
    dumped = project.ok("dump", "all.dump")
    assert dumped.stdout.strip() == f"dumped {len(source):,} keys to all.dump"
    assert "dump: done" in dumped.stderr
    assert all(keys <= 1000 and size < 1_000_000 + 200_000 for keys, size in batches)
    assert len(batches) > len(source) // 1000

    # A transaction limit of 1.5 MB: one transaction for everything (over 2 MB) would fail.
    assert sum(len(k) + len(v) for k, v in source.items()) > 2_000_000
    target = f"sqlite:///{project.root / 'copy.db'}?transaction_size=1500000"
    loaded = project.ok("load", "all.dump", "--url", target)
    assert f"loaded {len(source):,} keys from all.dump" in loaded.stdout
    assert "load: done" in loaded.stderr
    assert project.keys(target) == source

    refused = project.fails("load", "all.dump", "--url", target, expect="already holds keys")
    assert "--replace" in refused
    assert project.keys(target) == source


def test_tenant_dump_copies_only_that_tenant(project: Project) -> None:
    project.configure(multi_tenant=True)
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    fill(project, tenant="acme", small=50, big=1)
    fill(project, tenant="globex", small=20, big=0)
    project.ok("upgrade", "--all-tenants")
    source = project.keys()
    registry = pack((None, "tenants", "acme"))
    acme = {k: v for k, v in source.items() if k.startswith(pack(("acme",))) or k == registry}
    assert 50 < len(acme) < len(source)

    project.ok("dump", "acme.dump", "--tenant", "acme")
    other = f"sqlite:///{project.root / 'other.db'}"
    project.ok("load", "acme.dump", "--url", other)
    assert project.keys(other) == acme
    assert project.ok("tenants", "list", "--url", other).stdout.split() == ["acme"]
    assert "acme: " in project.ok("current", "--all-tenants", "--url", other).stdout

    # Loading it back where acme lives: refused, or replaced with --replace.
    project.ok("tenants", "create", "initech")
    project.fails("load", "acme.dump", expect="(tenant 'acme')")
    fill(project, tenant="hooli", small=3, big=0)
    project.ok("tenants", "delete", "-y", "globex")
    before = project.keys()
    project.ok("load", "acme.dump", "--replace")
    assert project.keys() == before  # acme was the same; the other tenants are untouched
    project.fails("dump", "x.dump", "--tenant", "nobody", expect="tenant 'nobody' does not exist")
    assert not (project.root / "x.dump").exists()
    assert not (project.root / "x.dump.partial").exists()


@pytest.fixture
def dumped(project: Project) -> Path:
    project.ok("revision", "--autogenerate", "-m", "people indexes")
    project.ok("upgrade")
    fill(project, small=200, big=2)
    project.ok("dump", "good.dump")
    return project.root / "good.dump"


def damaged(path: Path, data: bytes) -> Path:
    bad = path.with_name("bad.dump")
    bad.write_bytes(data)
    return bad


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (lambda data: data[: len(data) // 2], "is truncated after"),
        (lambda data: data[:-1], "is truncated after"),
        (lambda data: data[:-41], "is truncated after"),
        (lambda data: data[:20], "is truncated: its header is incomplete"),
        (lambda data: data + b"x", "data after the end of the dump"),
        (lambda data: data[:-33] + bytes([data[-33] ^ 1]) + data[-32:], "checksum does not match"),
        (lambda data: b"SQLite format 3\x00" + data[16:], "is not an fdbsync dump"),
        (lambda data: data.replace(MAGIC + b" 1 ", MAGIC + b" 9 ", 1), "dump format '9'"),
    ],
)
def test_damaged_files_are_refused_and_write_nothing(
    project: Project, dumped: Path, damage: object, expect: str
) -> None:
    bad = damaged(dumped, damage(dumped.read_bytes()))  # type: ignore[operator]
    target = project.root / "fresh.db"
    project.fails("load", str(bad), "--url", f"sqlite:///{target}", expect=expect)
    assert not target.exists()  # the engine was never even opened


def test_a_flipped_byte_anywhere_is_caught(project: Project, dumped: Path) -> None:
    data = dumped.read_bytes()
    existing = project.keys()
    header = data.index(b"\n") + 1
    for position in (header + 3, len(data) // 3, len(data) // 2, len(data) - 60):
        flipped = bytes([data[position] ^ 0x10])
        bad = damaged(dumped, data[:position] + flipped + data[position + 1 :])
        project.fails("load", str(bad), "--replace", expect=str(bad))
        assert project.keys() == existing  # --replace cleared nothing either


def test_reader_counts_and_header(dumped: Path) -> None:
    reader = DumpReader(dumped, key_limit=10_000, value_limit=100_000)
    assert reader.header.ranges == ((b"", b"\xff"),) and reader.header.tenant is None
    assert reader.header.extra["source"].startswith("sqlite:///")
    assert reader.verify() == reader.count and reader.count > 200
    tight = DumpReader(dumped, key_limit=10_000, value_limit=1_000)
    with pytest.raises(Exception, match="over the engine's limits"):
        tight.verify()


def test_load_needs_an_existing_file(project: Project) -> None:
    project.fails("load", "missing.dump", expect="no dump file at missing.dump")
