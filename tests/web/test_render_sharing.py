"""What `FragmentRenderer` shares between pages, and what it must never share.

A render is keyed by the values the block reads. Anything else a block's output depends on
(the context read by a filter, a test, a global function such as Starlette's `url_for`, an
extension's tag, an imported macro) must either be in the key or make the block render per
page; a global's value, the template's source and the fragment's name are part of the key.
And pages that show the same records do share their renders.

The renderer's cases run on a Jinja environment over templates in tmp_path; the end-to-end
ones on a real uvicorn (`fdbsync.testing`) over a SQLite file in tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import time
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pytest
from data.models import Person
from fastapi import FastAPI, Header
from fastapi.templating import Jinja2Templates
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser

from fdbsync.data import Repo
from fdbsync.engine import create_engine
from fdbsync.sync import LiveSession
from fdbsync.testing import LiveClient, LiveServer, serve
from fdbsync.web import Fragment, FragmentError, FragmentRenderer, LiveSync, live_sync

from .liveapp import WITHIN_S, first_event

# -- the renderer --------------------------------------------------------------------------------

BLOCK = Fragment(block="b", name="b")


def renderer(
    tmp_path: Path, templates: Mapping[str, str], *, extensions: Iterable[Any] = ()
) -> FragmentRenderer:
    """A renderer over `templates` written to tmp_path, in an environment set up as
    `Jinja2Templates` sets it up (with Starlette's `url_for`)."""
    for name, source in templates.items():
        (tmp_path / name).write_text(source)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(tmp_path),
        autoescape=True,
        extensions=list(extensions),
    )
    return FragmentRenderer(Jinja2Templates(env=env).env)


def page(**values: Any) -> dict[str, Any]:
    """A page's render context: each page has its own request."""
    return {"request": object(), "item": "x", **values}


@jinja2.pass_context
def for_user(context: Any, value: Any) -> str:
    """A filter that reads the context (as a per-user format or a permission check does)."""
    return f"{value} for {context['user']}"


@jinja2.pass_context
def own(context: Any, value: Any) -> bool:
    """A test that reads the context."""
    return bool(context["user"] == "alice")


class WhoAmI(Extension):
    """`{% whoami %}`: a custom tag that reads the context, as CSRF and auth tags do."""

    tags = {"whoami"}  # noqa: RUF012 (Jinja's own declaration)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        call = self.call_method("_who", [nodes.ContextReference()])
        return nodes.Output([call], lineno=lineno)

    def _who(self, context: Any) -> str:
        return f"signed in as {context['user']}"


def block(body: str) -> str:
    return '{% block b %}<p id="fdbsync-b">' + body + "</p>{% endblock %}"


MACROS = "{% macro badge(x) %}{{ x }} for {{ user }}{% endmacro %}"


def setup_filter(r: FragmentRenderer) -> None:
    r.env.filters["for_user"] = for_user


def setup_test(r: FragmentRenderer) -> None:
    r.env.tests["own"] = own


def setup_nothing(r: FragmentRenderer) -> None:
    pass


@pytest.mark.parametrize(
    ("source", "setup", "extensions"),
    [
        pytest.param(block("{{ item | for_user }}"), setup_filter, (), id="pass_context-filter"),
        pytest.param(
            block("{% if item is own %}alice{% else %}bob{% endif %}"),
            setup_test,
            (),
            id="pass_context-test",
        ),
        pytest.param(
            block("{% macro who() %}{{ user }}{% endmacro %}{{ item }} for {{ who() }}"),
            setup_nothing,
            (),
            id="macro-in-the-block",
        ),
        pytest.param(block("{% whoami %}"), setup_nothing, (WhoAmI,), id="extension-tag"),
    ],
)
def test_what_reads_a_users_value_is_never_shared_across_users(
    tmp_path: Path,
    source: str,
    setup: Callable[[FragmentRenderer], None],
    extensions: tuple[Any, ...],
) -> None:
    r = renderer(tmp_path, {"page.html": source}, extensions=extensions)
    setup(r)
    alice = r.render(BLOCK, "b", "page.html", page(user="alice"))
    bob = r.render(BLOCK, "b", "page.html", page(user="bob"))
    assert "alice" in alice and "bob" not in alice
    assert "bob" in bob and "alice" not in bob
    assert (r.renders, r.shared) == (2, 0)


@pytest.mark.parametrize(
    ("templates", "extensions"),
    [
        pytest.param({"page.html": block("{% whoami %}")}, (WhoAmI,), id="extension-tag"),
        pytest.param({"page.html": block("{% debug %}")}, ("jinja2.ext.debug",), id="debug"),
        pytest.param(
            {
                "page.html": block(
                    '{% from "macros.html" import badge with context %}{{ badge(item) }}'
                ),
                "macros.html": MACROS,
            },
            (),
            id="imported-macro",
        ),
        pytest.param({"page.html": block("{{ item }}{{ greeting }}")}, (), id="unknown-name"),
    ],
)
def test_blocks_whose_reads_cannot_be_seen_render_per_page(
    tmp_path: Path, templates: dict[str, str], extensions: tuple[Any, ...]
) -> None:
    r = renderer(tmp_path, templates, extensions=extensions)
    alice = r.render(BLOCK, "b", "page.html", page(user="alice"))
    bob = r.render(BLOCK, "b", "page.html", page(user="bob"))
    # Equal values, but another page (another request): rendered again, never shared.
    again = r.render(BLOCK, "b", "page.html", page(user="alice"))
    assert (r.renders, r.shared) == (3, 0)
    if "greeting" not in templates["page.html"]:
        assert "alice" in alice and "bob" not in alice
        assert "bob" in bob and "alice" not in bob
        assert "alice" in again


def test_a_context_reading_method_of_a_global_object_is_not_shared(tmp_path: Path) -> None:
    r = renderer(tmp_path, {"page.html": block("{{ item }} for {{ helpers.who() }}")})

    @jinja2.pass_context
    def who(context: Any) -> str:
        return str(context["user"])

    r.env.globals["helpers"] = types.SimpleNamespace(who=who)
    r.render(BLOCK, "b", "page.html", page(user="alice"))
    bob = r.render(BLOCK, "b", "page.html", page(user="bob"))
    assert bob == '<p id="fdbsync-b">x for bob</p>'


def test_a_global_constant_changed_between_renders_renders_again(tmp_path: Path) -> None:
    r = renderer(tmp_path, {"page.html": block("{{ item }} at {{ site_name }}")})
    r.env.globals["site_name"] = "Acme"
    assert r.render(BLOCK, "b", "page.html", page()) == '<p id="fdbsync-b">x at Acme</p>'
    r.env.globals["site_name"] = "Globex"
    assert r.render(BLOCK, "b", "page.html", page()) == '<p id="fdbsync-b">x at Globex</p>'
    r.env.globals["site_name"] = "Acme"  # back to a value rendered before: shared again
    assert r.render(BLOCK, "b", "page.html", page()) == '<p id="fdbsync-b">x at Acme</p>'
    assert (r.renders, r.shared) == (2, 1)


def test_an_edited_template_renders_afresh_under_auto_reload(tmp_path: Path) -> None:
    r = renderer(tmp_path, {"page.html": block("old {{ item }}")})
    assert r.env.auto_reload
    assert r.render(BLOCK, "b", "page.html", page()) == '<p id="fdbsync-b">old x</p>'
    source = tmp_path / "page.html"
    source.write_text(block("new {{ item }}"))
    later = time.time() + 10  # a modification time the loader sees as changed
    os.utime(source, (later, later))
    assert r.render(BLOCK, "b", "page.html", page()) == '<p id="fdbsync-b">new x</p>'
    assert r.renders == 2


def test_negative_zero_renders_apart_from_zero(tmp_path: Path) -> None:
    r = renderer(tmp_path, {"page.html": block("{{ x }}")})
    assert r.render(BLOCK, "b", "page.html", page(x=0.0)) == '<p id="fdbsync-b">0.0</p>'
    assert r.render(BLOCK, "b", "page.html", page(x=-0.0)) == '<p id="fdbsync-b">-0.0</p>'
    assert r.render(BLOCK, "b", "page.html", page(x=0)) == '<p id="fdbsync-b">0</p>'
    assert r.renders == 3


def test_each_fragment_name_on_one_template_is_checked_even_on_a_cache_hit(
    tmp_path: Path,
) -> None:
    r = renderer(tmp_path, {"page.html": "", "count.html": '<b id="fdbsync-a">{{ n }}</b>'})
    named_a = Fragment(template="count.html", name="a")
    named_b = Fragment(template="count.html", name="b")
    context = page(n=1)
    assert r.render(named_a, "a", "page.html", context) == '<b id="fdbsync-a">1</b>'
    for _ in range(2):
        with pytest.raises(FragmentError, match=r"live\.target\('b'\)"):
            r.render(named_b, "b", "page.html", context)
    assert r.render(named_a, "a", "page.html", page(n=1)) == '<b id="fdbsync-a">1</b>'
    assert r.shared == 1  # the one for `a`, whose element is there


def test_equal_inputs_share_a_render_through_jinjas_own_filters(tmp_path: Path) -> None:
    r = renderer(
        tmp_path,
        {
            "page.html": block(
                '{{ people | map(attribute="name") | sort | unique | join(", ") }}'
                "{% if people is sequence %} ({{ people | length }}){% endif %}"
            )
        },
    )
    people = [{"name": "Bob"}, {"name": "Ada"}, {"name": "Ada"}]
    html = [
        r.render(BLOCK, "b", "page.html", page(people=people, user=u))
        for u in ("alice", "bob", "cy")
    ]
    # A value equal by its items, not the same object.
    html.append(r.render(BLOCK, "b", "page.html", page(people=[dict(p) for p in people])))
    assert html == ['<p id="fdbsync-b">Ada, Bob (3)</p>'] * 4
    assert (r.renders, r.shared) == (1, 3)


# -- end to end ----------------------------------------------------------------------------------

RED = [
    Person(id="ada", name="Ada", email="ada@acme.test", team="red", age=36),
    Person(id="bob", name="Bob", email="bob@acme.test", team="red", age=41),
    Person(id="dee", name="Dee", email="dee@acme.test", team="blue", age=52),
]

TEAM_PAGE = (
    "<!doctype html>\n<html><head>{{ live.scripts() }}</head><body>{{ live.stream() }}\n"
    '{% block roster %}<p {{ live.target("roster") }}>'
    '{{ team | map(attribute="name") | sort | unique | join(", ") }}</p>{% endblock %}\n'
    '{% block mine %}<p {{ live.target("mine") }}>'
    '{{ team | map(attribute="name") | sort | join(", ") | for_viewer }}</p>{% endblock %}\n'
    "</body></html>\n"
)

LINK_PAGE = (
    "<!doctype html>\n<html><body>{{ live.stream() }}\n"
    '{% block one %}<p {{ live.target("one") }}>'
    "<a href=\"{{ url_for('linked') }}\">{{ one.name }}</a></p>{% endblock %}\n</body></html>\n"
)


@jinja2.pass_context
def for_viewer(context: Any, value: Any) -> str:
    return f"{value}, as {context['viewer']} sees them"


@dataclass
class Site:
    live: LiveSync
    repo: Repo  # the test's, on the same file
    server: LiveServer
    client: LiveClient


@contextlib.asynccontextmanager
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """The team and link pages served on 127.0.0.1 over a seeded SQLite file."""
    path = tmp_path / "site.db"
    templates_dir = tmp_path / "templates"
    templates_dir.mkdir()
    (templates_dir / "team.html").write_text(TEAM_PAGE)
    (templates_dir / "link.html").write_text(LINK_PAGE)
    async with create_engine(f"sqlite:///{path}") as writer:
        repo = Repo(writer, models=[Person])
        await repo.build_indexes(Person)
        await repo.insert_all(RED)
        templates = Jinja2Templates(directory=templates_dir)
        templates.env.filters["for_viewer"] = for_viewer
        live = LiveSync(Repo(create_engine(f"sqlite:///{path}"), models=[Person]), templates)
        app = FastAPI(lifespan=live.lifespan)

        @app.get("/team")
        @live_sync("team.html", fragments={"team": ["roster", "mine"]})
        async def team(session: LiveSession, x_user: str = Header("anonymous")) -> None:
            session.assigns["viewer"] = x_user
            await session.sync_all_by("team", Person, {"team": "red"})

        @app.get("/linked", name="linked")
        @live_sync("link.html")
        async def linked(session: LiveSession) -> None:
            await session.sync_one("one", Person, "ada")

        async with serve(app) as server, LiveClient(server.url, timeout=WITHIN_S) as client:
            yield Site(live, repo, server, client)


async def rename(repo: Repo, pid: str, name: str) -> None:
    found = await repo.get(Person, pid)
    assert found is not None, pid
    await repo.update(found, {"name": name})


async def test_pages_showing_the_same_records_share_renders_but_not_per_user_ones(
    tmp_path: Path,
) -> None:
    async with site(tmp_path) as env:
        alice_page = await env.client.page("/team", headers={"X-User": "alice"})
        bob_page = await env.client.page("/team", headers={"X-User": "bob"})
        assert alice_page.fragments["roster"] == '<p id="fdbsync-roster">Ada, Bob</p>'
        assert "as alice sees them" in alice_page.fragments["mine"]
        assert "as bob sees them" in bob_page.fragments["mine"]
        async with (
            env.client.stream(alice_page.stream_url, headers={"X-User": "alice"}) as alice,
            env.client.stream(bob_page.stream_url, headers={"X-User": "bob"}) as bob,
        ):
            await first_event(alice)
            await first_event(bob)
            before = env.live.stats()
            await rename(env.repo, "bob", "Abe")
            for stream, user in ((alice, "alice"), (bob, "bob")):
                roster = await stream.next_fragment("roster")
                assert roster == '<p id="fdbsync-roster">Abe, Ada</p>'
                mine = await stream.next_fragment("mine")
                assert mine == f'<p id="fdbsync-mine">Abe, Ada, as {user} sees them</p>'
            after = env.live.stats()
            # The roster once for both pages; each viewer's own fragment once per viewer.
            assert after.renders - before.renders == 3
            assert after.shared_renders - before.shared_renders == 1
            assert after.pushes - before.pushes == 2


async def test_url_for_with_a_forged_host_stays_in_its_own_stream(tmp_path: Path) -> None:
    async with site(tmp_path) as env:
        ours = f'href="{env.server.url}/linked"'
        forged = 'href="http://evil.example/linked"'
        async with env.client.stream("/linked", headers={"Host": "evil.example"}) as attacker:
            # Rendered first, with the forged host.
            assert forged in await attacker.next_fragment("one")
            async with env.client.stream("/linked") as victim:
                first = await victim.next_fragment("one")
                assert ours in first and "evil" not in first
                await rename(env.repo, "ada", "Ada Lovelace")
                pushed = await attacker.wait_for("one", lambda html: "Lovelace" in html)
                assert forged in pushed
                pushed = await victim.wait_for("one", lambda html: "Lovelace" in html)
                assert ours in pushed and "evil" not in pushed
            page = await env.client.page("/linked")
            assert ours in page.fragments["one"] and "evil" not in page.html
