"""The `fdbsync` command: migrations, tenants, dump and load.

Each command reads the settings (config.py), runs its async work with `asyncio.run` on an
engine it opens and always closes, and reports expected failures as one line (errors.py).
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from ..data.repo import Repo
from ..migrate.revisions import History, new_revision_id, revision_file, revision_filename
from .autogen import missing, unbalanced, undeclared
from .config import Config, load_config, opened
from .describe import describe_history
from .dump import dump as dump_keys
from .dump import load as load_keys
from .dump import open_dump
from .errors import CliError, reports_errors
from .progress import make_progress
from .runner import Runner, Target, select_targets

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="fdbsync",
    help="Migrations, tenants, dump and load for fdbsync projects (settings: [tool.fdbsync]).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
tenants_app = typer.Typer(help="List, create and delete tenants.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="PATH",
        help="The pyproject.toml to read (default: the nearest one upwards).",
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", metavar="URL", help="Engine URL (overrides $FDBSYNC_URL and [tool.fdbsync] url)."
    ),
]
TenantOption = Annotated[
    str | None, typer.Option("--tenant", metavar="NAME", help="Only this tenant.")
]
AllTenantsOption = Annotated[bool, typer.Option("--all-tenants", help="Every tenant, in turn.")]


@dataclass(frozen=True)
class _Given:
    """--config and --url given before the command name."""

    config: Path | None = None
    url: str | None = None


@app.callback()
def root(ctx: typer.Context, config: ConfigOption = None, url: UrlOption = None) -> None:
    ctx.obj = _Given(config, url)


def _settings(ctx: typer.Context, config: Path | None, url: str | None = None) -> Config:
    given = ctx.find_root().obj
    given = given if isinstance(given, _Given) else _Given()
    return load_config(config or given.config, url or given.url)


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it is below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _history(settings: Config, *, required: bool = True) -> History:
    """The migrations; a missing folder is an error, or no revisions yet if not `required`."""
    if not required and not settings.migrations.exists():
        return History([])
    return History.load(settings.migrations)


def _run(work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await work()

    return asyncio.run(main())


# -- revisions -----------------------------------------------------------------------------


@app.command()
@reports_errors
def revision(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Option("-m", "--message", metavar="TEXT", help="What the revision does.")
    ],
    autogenerate: Annotated[
        bool,
        typer.Option(
            "--autogenerate", help="Create the indexes the models declare and no migration does."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Write a new revision file on top of the head."""
    settings = _settings(ctx, config)
    message = message.strip()
    if not message or "\n" in message:
        raise CliError("the message must be one non-empty line")
    history = _history(settings, required=False)
    upgrade: list[str] = []
    downgrade: list[str] = []
    if autogenerate:
        models = settings.load_models()
        for source, name in undeclared(models, history):
            typer.echo(f"note: the migrations create {source}.{name}, which no model declares")
        todo = missing(models, history)
        if not todo:
            typer.echo("nothing to do: the migrations create every index the models declare")
            return
        upgrade = [item.create_line() for item in todo]
        downgrade = [item.drop_line() for item in reversed(todo)]
    known = {item.id for item in history.revisions}
    revision_id = new_revision_id()
    while revision_id in known:
        revision_id = new_revision_id()
    text = revision_file(revision_id, history.head, message, upgrade, downgrade)
    try:
        compile(text, "revision", "exec")
    except SyntaxError:
        raise CliError(f"the message {message!r} cannot go in a revision file") from None
    settings.migrations.mkdir(parents=True, exist_ok=True)
    path = settings.migrations / revision_filename(revision_id, message)
    with path.open("x") as file:
        file.write(text)
    typer.echo(f"created {_shown(path)} (revision {revision_id}, after {history.head or 'base'})")
    for line in upgrade:
        typer.echo(f"  {line}")


@app.command()
@reports_errors
def history(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Show the revisions from the first to the head, and what each does."""
    settings = _settings(ctx, config)
    for line in describe_history(_history(settings, required=False)):
        typer.echo(line)


@app.command()
@reports_errors
def check(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Exit 1 when the models declare indexes no migration creates."""
    settings = _settings(ctx, config)
    models = settings.load_models()
    loaded = _history(settings, required=False)
    for problem in unbalanced(loaded):
        typer.echo(f"warning: {problem}")
    for source, name in undeclared(models, loaded):
        typer.echo(f"warning: the migrations create {source}.{name}, which no model declares")
    todo = missing(models, loaded)
    if not todo:
        typer.echo("ok: the migrations create every index the models declare")
        return
    typer.echo("the models declare what no migration creates:")
    for item in todo:
        typer.echo(f"  {item.describe()}")
    typer.echo('run `fdbsync revision --autogenerate -m "..."` to add a revision for them')
    raise typer.Exit(1)


# -- moving tenants ------------------------------------------------------------------------


async def _migrate(
    settings: Config,
    tenant: str | None,
    all_tenants: bool,
    move: Callable[[Runner, Target], Awaitable[None]],
    *,
    needs_models: bool = True,
) -> None:
    loaded = _history(settings, required=needs_models)
    models = settings.load_models() if needs_models else []
    async with settings.engine() as engine:
        repo = Repo(engine, models=models, multi_tenant=settings.multi_tenant)
        targets = await select_targets(repo, tenant, all_tenants)
        if not targets:
            typer.echo("no tenants")
        with make_progress() as progress:
            runner = Runner(repo, loaded, progress, typer.echo)
            for target in targets:
                await move(runner, target)


@app.command()
@reports_errors
def upgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="head, or a revision id (or prefix).")
    ] = "head",
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Apply revisions up to REVISION (building indexes online)."""
    settings = _settings(ctx, config, url)

    async def move(runner: Runner, target: Target) -> None:
        await runner.upgrade(target, revision)

    _run(lambda: _migrate(settings, tenant, all_tenants, move))


@app.command()
@reports_errors
def downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="base, or a revision id (or prefix).")
    ],
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Undo the revisions above REVISION ("base": all of them)."""
    settings = _settings(ctx, config, url)

    async def move(runner: Runner, target: Target) -> None:
        await runner.downgrade(target, revision)

    _run(lambda: _migrate(settings, tenant, all_tenants, move))


@app.command()
@reports_errors
def current(
    ctx: typer.Context,
    tenant: TenantOption = None,
    all_tenants: AllTenantsOption = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Show the revision the database (or each tenant) is at."""
    settings = _settings(ctx, config, url)

    async def show(runner: Runner, target: Target) -> None:
        typer.echo(f"{target.prefix}{runner.describe(await runner.migrator.current(target.repo))}")

    _run(lambda: _migrate(settings, tenant, all_tenants, show, needs_models=False))


# -- tenants -------------------------------------------------------------------------------


def _multi_tenant(ctx: typer.Context, config: Path | None, url: str | None) -> Config:
    """The settings of a multi-tenant project (CliError for a single-tenant one)."""
    settings = _settings(ctx, config, url)
    if not settings.multi_tenant:
        raise CliError("this project is single-tenant: set multi_tenant = true in [tool.fdbsync]")
    return settings


@tenants_app.command("list")
@reports_errors
def tenants_list(ctx: typer.Context, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Every tenant's name, in order."""
    settings = _multi_tenant(ctx, config, url)

    async def work() -> list[str]:
        async with settings.engine() as engine:
            return await Repo(engine, multi_tenant=True).tenants.list()

    for name in _run(work):
        typer.echo(name)


@tenants_app.command("create")
@reports_errors
def tenants_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new tenant's name.")],
    upgrade: Annotated[
        bool, typer.Option("--upgrade", help="Then bring it to the migrations' head.")
    ] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Register a new, empty tenant."""
    settings = _multi_tenant(ctx, config, url)

    async def work() -> None:
        loaded = _history(settings) if upgrade else None
        models = settings.load_models() if upgrade else None
        async with settings.engine() as engine:
            repo = Repo(engine, models=models, multi_tenant=True)
            created = await repo.tenants.create(name)
            typer.echo(f"created tenant {name!r}")
            if loaded is not None:
                with make_progress() as progress:
                    runner = Runner(repo, loaded, progress, typer.echo)
                    await runner.upgrade(Target(name, created), "head")

    _run(work)


@tenants_app.command("delete")
@reports_errors
def tenants_delete(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The tenant to delete, with all its data.")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Delete a tenant and everything in it."""
    settings = _multi_tenant(ctx, config, url)
    if not yes:
        typer.confirm(f"Delete tenant {name!r} and all its data?", abort=True)

    async def work() -> None:
        async with settings.engine() as engine:
            await Repo(engine, multi_tenant=True).tenants.delete(name)

    _run(work)
    typer.echo(f"deleted tenant {name!r}")


# -- dump and load -------------------------------------------------------------------------


@app.command()
@reports_errors
def dump(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The dump file to write.")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", metavar="NAME", help="Only this tenant's keys.")
    ] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Copy every key (or one tenant's) from the engine to FILE."""
    settings = _settings(ctx, config, url)

    async def work() -> int:
        async with settings.engine() as engine:
            with make_progress() as progress:
                return await dump_keys(engine, file, progress, tenant)

    count = _run(work)
    typer.echo(f"dumped {count:,} keys to {file}")


@app.command()
@reports_errors
def load(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A file `fdbsync dump` wrote.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="Clear the dumped ranges in the target first.")
    ] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Copy the keys of FILE into the engine (after checking the whole file)."""
    settings = _settings(ctx, config, url)
    engine = settings.create_engine()
    reader, _ = open_dump(
        engine, file
    )  # checked before the engine opens: a bad file writes nothing

    async def work() -> int:
        async with opened(engine):
            with make_progress() as progress:
                return await load_keys(engine, reader, progress, replace=replace)

    count = _run(work)
    typer.echo(f"loaded {count:,} keys from {file} into {engine.url}")


def main() -> None:
    """The console script's entry point."""
    app()
