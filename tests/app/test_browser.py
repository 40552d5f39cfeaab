"""The example app in a real browser: Debian's Chromium driven by Playwright, under htmx 4 and
htmx 2 (the `htmx` cookie picks the version a page loads).

Two browser contexts, signed in as two accounts of tenant acme (Ada and Bob), open live pages.
For every sync kind a change made in one appears in the other without a reload: the people
list (sync_all: add with the form, edit in the edit panel, delete), the pinned people
(sync_many: pin, unpin), a team's page (sync_all_by) and a person's page (sync_one: an edit,
the deletion, and the person restored). Changes through the JSON API appear too. After a
server restart on the same port, with the database changed while it was down, the pages
reconnect on their own and show the database's state. At phone width (390x844) no page
scrolls sideways. A screenshot of the seeded people page is kept as a test artifact
(var/artifacts/people.png) and as README's image (docs/images/people.png).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from app_helpers import PASSWORD, ROOT, AppServer, StartServer
from playwright.async_api import (
    Browser,
    Dialog,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from app.models import Person, Pin, SignIn
from fdbsync import Repo, create_engine

CHROMIUM = Path("/usr/bin/chromium")
#: How long a change may take to reach the other page (normally well under a second).
SHOW_MS = 10_000
#: How long pages may take to come back after a restart (htmx backs off between attempts).
RECOVER_MS = 30_000
API = "/api/t/acme/people"
ARTIFACTS = ROOT / "var" / "artifacts"
README_IMAGE = ROOT / "docs" / "images" / "people.png"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium",
    ),
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module (each test opens contexts of its own)."""
    expect.set_options(timeout=SHOW_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


class Tab:
    """A signed-in page, and the JavaScript errors it has had."""

    def __init__(self, page: Page, base: str, htmx: int) -> None:
        self.page = page
        self.base = base
        self.htmx = htmx
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on(
            "response",
            lambda response: (
                self.errors.append(f"{response.status} for {response.url}")
                if response.status >= 400
                else None
            ),
        )
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )

    @property
    def csrf(self) -> Awaitable[str | None]:
        return self.page.locator('meta[name="csrf-token"]').get_attribute("content")

    async def goto(self, path: str) -> None:
        answer = await self.page.goto(self.base + path)
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        version = await self.page.evaluate("window.htmx && htmx.version")
        assert str(version).startswith(f"{self.htmx}."), (path, version)
        await self.page.evaluate("window.notReloaded = true")

    async def not_reloaded(self) -> None:
        assert await self.page.evaluate("window.notReloaded") is True, "the page was reloaded"

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON API request with this browser's cookie and CSRF header."""
        answer = await self.page.request.fetch(
            self.base + path,
            method=method,
            data=body,
            headers={"X-CSRF-Token": await self.csrf or ""},
        )
        assert answer.ok, (method, path, answer.status, await answer.text())
        is_json = answer.headers.get("content-type", "").startswith("application/json")
        return await answer.json() if is_json else None

    # -- the people page ---------------------------------------------------------------------

    def row(self, name: str) -> Any:
        return self.page.locator("#fdbsync-people li.person").filter(
            has=self.page.locator("a.name", has_text=re.compile(f"^{re.escape(name)}$"))
        )

    def pinned(self, name: str) -> Any:
        return self.page.locator("#fdbsync-pinned li").filter(
            has=self.page.get_by_role("link", name=name, exact=True)
        )

    def team_link(self, team: str) -> Any:
        return self.page.locator("#fdbsync-teams a.team", has_text=re.compile(f"^{team}$"))

    async def add(self, name: str, email: str, team: str) -> None:
        form = self.page.locator('form[action$="/people"].person-form')
        await form.get_by_label("Name").fill(name)
        await form.get_by_label("Email").fill(email)
        await form.get_by_label("Team").fill(team)
        await form.get_by_role("button", name="Add").click()
        # The form comes back empty once the person is stored.
        await expect(form.get_by_label("Name")).to_have_value("", timeout=SHOW_MS)

    async def edit(self, who: str, **changes: str) -> None:
        """Change `who` in the edit panel: `changes` by field (name, email, team)."""
        await self.row(who).get_by_role("button", name="Edit").click()
        editor = self.page.locator("#editor")
        await expect(editor.get_by_role("heading")).to_have_text(f"Edit {who}", timeout=SHOW_MS)
        for field, value in changes.items():
            await editor.get_by_label(field.capitalize()).fill(value)
        await editor.get_by_role("button", name="Save").click()
        await expect(editor).to_be_empty(timeout=SHOW_MS)

    async def delete(self, name: str) -> None:
        asked: list[str] = []

        async def accept(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        self.page.once("dialog", accept)
        await self.row(name).get_by_role("button", name="Delete").click()
        await expect(self.row(name)).to_have_count(0, timeout=SHOW_MS)
        assert asked == [f"Delete {name}?"]


async def new_tab(
    browser: Browser,
    base: str,
    email: str,
    htmx: int,
    viewport: ViewportSize = DESKTOP,
) -> Tab:
    """A browser context of its own (its own cookies), signed in with the sign-in form."""
    context = await browser.new_context(viewport=viewport)
    await context.add_cookies([{"name": "htmx", "value": str(htmx), "url": base}])
    context.set_default_timeout(SHOW_MS)
    tab = Tab(await context.new_page(), base, htmx)
    await tab.page.goto(base + "/signin")
    await tab.page.get_by_label("Email").fill(email)
    await tab.page.get_by_label("Password").fill(PASSWORD)
    await tab.page.get_by_role("button", name="Sign in").click()
    await expect(tab.page).to_have_url(base + "/t/acme/people")
    await tab.goto("/t/acme/people")
    return tab


Tabs = Callable[..., Awaitable[tuple[Tab, Tab]]]


@pytest_asyncio.fixture(loop_scope="module")
async def two_tabs(browser: Browser) -> AsyncIterator[Tabs]:
    """`ada, bob = await two_tabs(base, htmx)`: Ada and Bob (both of acme) on the people page.
    At teardown neither may have had a JavaScript error."""
    opened: list[Tab] = []

    async def open_two(base: str, htmx: int) -> tuple[Tab, Tab]:
        ada = await new_tab(browser, base, "ada@acme.test", htmx)
        bob = await new_tab(browser, base, "bob@acme.test", htmx)
        opened.extend([ada, bob])
        return ada, bob

    yield open_two
    errors = [error for tab in opened for error in tab.errors]
    for tab in opened:
        await tab.page.context.close()
    assert errors == []


def unique() -> str:
    return uuid.uuid4().hex[:6]


def someone(prefix: str) -> tuple[str, str]:
    """A name and email no other test uses."""
    tag = unique()
    return f"{prefix} {tag}", f"{prefix.lower()}.{tag}@acme.test"


HTMX = pytest.mark.parametrize("htmx", [4, 2])


# -- each sync kind ------------------------------------------------------------------------------


@HTMX
async def test_people_list_follows_add_edit_and_delete(
    shared_server: str, two_tabs: Tabs, htmx: int
) -> None:
    """sync_all: everyone, ordered by name, and the teams they are on."""
    ada, bob = await two_tabs(shared_server, htmx)
    name, email = someone("Added")
    team = f"team-{unique()}"
    await ada.add(name, email, team)
    for tab in (ada, bob):
        await expect(tab.row(name)).to_contain_text(email)
        await expect(tab.row(name).locator("a.team")).to_have_text(team)
        await expect(tab.team_link(team)).to_have_count(1)
    names = await bob.page.locator("#fdbsync-people a.name").all_text_contents()
    assert names == sorted(names, key=str.lower)  # as Jinja sorts: case-insensitively

    renamed, new_email = someone("Renamed")
    await ada.edit(name, name=renamed, email=new_email)
    for tab in (ada, bob):
        await expect(tab.row(renamed)).to_contain_text(new_email)
        await expect(tab.row(name)).to_have_count(0)

    await bob.delete(renamed)
    for tab in (ada, bob):
        await expect(tab.row(renamed)).to_have_count(0)
        await expect(tab.team_link(team)).to_have_count(0)  # nobody is on it now
    for tab in (ada, bob):
        await tab.not_reloaded()


@HTMX
async def test_pinned_people_follow_pin_and_unpin(
    shared_server: str, two_tabs: Tabs, htmx: int
) -> None:
    """sync_many: the pinned people, by their ids."""
    ada, bob = await two_tabs(shared_server, htmx)
    name, email = someone("Pinned")
    person = await ada.api(
        "POST", "/api/t/acme/people", {"name": name, "email": email, "team": "qa"}
    )
    await expect(bob.row(name)).to_have_count(1)

    await ada.row(name).get_by_role("button", name="Pin").click()
    for tab in (ada, bob):
        await expect(tab.pinned(name)).to_have_count(1)
        await expect(tab.row(name).get_by_role("button", name="Unpin")).to_be_visible()

    # A pinned person's record changes: the pinned list shows it.
    renamed, _ = someone("Repinned")
    await ada.api("PATCH", f"/api/t/acme/people/{person['id']}", {"name": renamed})
    for tab in (ada, bob):
        await expect(tab.pinned(renamed)).to_have_count(1)
        await expect(tab.pinned(name)).to_have_count(0)

    await bob.row(renamed).get_by_role("button", name="Unpin").click()
    for tab in (ada, bob):
        await expect(tab.pinned(renamed)).to_have_count(0)
        await expect(tab.row(renamed).get_by_role("button", name="Pin")).to_be_visible()

    # Pinned again, then deleted: gone from the pinned list too.
    await bob.row(renamed).get_by_role("button", name="Pin").click()
    await expect(ada.pinned(renamed)).to_have_count(1)
    await bob.delete(renamed)
    for tab in (ada, bob):
        await expect(tab.pinned(renamed)).to_have_count(0)
        await tab.not_reloaded()


@HTMX
async def test_team_page_follows_who_is_on_the_team(
    shared_server: str, two_tabs: Tabs, htmx: int
) -> None:
    """sync_all_by: the people of one team."""
    ada, bob = await two_tabs(shared_server, htmx)
    team = f"team-{unique()}"
    await bob.goto(f"/t/acme/teams/{team}")
    members = bob.page.locator("#fdbsync-members")
    await expect(members).to_have_text("Nobody is on this team now.")

    first, first_email = someone("Member")
    await ada.add(first, first_email, team)
    await expect(members.locator("a.name")).to_have_text([first])

    # Someone moves into the team (edit panel), someone joins through the API.
    mover, mover_email = someone("Mover")
    await ada.api("POST", API, {"name": mover, "email": mover_email, "team": "qa"})
    await expect(ada.row(mover)).to_have_count(1)
    await ada.edit(mover, team=team)
    await expect(members.locator("a.name")).to_have_text(sorted([first, mover]))

    # The first moves out; the mover is deleted: nobody is left.
    await ada.edit(first, team="elsewhere")
    await expect(members.locator("a.name")).to_have_text([mover])
    await ada.delete(mover)
    await expect(members).to_have_text("Nobody is on this team now.")
    await bob.not_reloaded()


@HTMX
async def test_person_page_follows_edit_delete_and_restore(
    shared_server: str, two_tabs: Tabs, htmx: int
) -> None:
    """sync_one: one person, by id, through deletion and re-creation."""
    ada, bob = await two_tabs(shared_server, htmx)
    name, email = someone("Solo")
    person = await ada.api(
        "POST", "/api/t/acme/people", {"name": name, "email": email, "team": "qa"}
    )
    await bob.goto(f"/t/acme/people/{person['id']}")
    card = bob.page.locator("#fdbsync-person")
    await expect(card.locator("h2.name")).to_have_text(name)

    await expect(ada.row(name)).to_have_count(1)
    renamed, new_email = someone("Edited")
    await ada.edit(name, name=renamed, email=new_email)
    await expect(card.locator("h2.name")).to_have_text(renamed)
    await expect(card.locator(".email")).to_have_text(new_email)
    await expect(bob.page).to_have_title(f"{name} · acme")  # the title is the page's, not live

    await ada.delete(renamed)
    await expect(card.locator("h2.gone")).to_have_text(f"{renamed} was deleted")

    await card.get_by_role("button", name=f"Restore {renamed}").click()
    await expect(card.locator("h2.name")).to_have_text(renamed)
    await expect(card.locator(".email")).to_have_text(new_email)
    # Re-created with the same id: the people list shows them again.
    await expect(ada.row(renamed)).to_have_count(1)
    await expect(ada.page.locator(f"#person-{person['id']}")).to_have_count(1)
    await bob.not_reloaded()
    await ada.not_reloaded()


@HTMX
async def test_changes_through_the_json_api_appear(
    shared_server: str, two_tabs: Tabs, htmx: int
) -> None:
    ada, bob = await two_tabs(shared_server, htmx)
    name, email = someone("Api")
    person = await ada.api(
        "POST", "/api/t/acme/people", {"name": name, "email": email, "team": "qa"}
    )
    await bob.goto(f"/t/acme/people/{person['id']}")
    await expect(ada.row(name)).to_contain_text(email)

    renamed, _ = someone("Patched")
    await bob.api("PATCH", f"/api/t/acme/people/{person['id']}", {"name": renamed})
    await expect(ada.row(renamed)).to_have_count(1)
    await expect(bob.page.locator("#fdbsync-person h2.name")).to_have_text(renamed)

    await bob.api("DELETE", f"/api/t/acme/people/{person['id']}")
    await expect(ada.row(renamed)).to_have_count(0)
    await expect(bob.page.locator("#fdbsync-person h2.gone")).to_have_text(f"{renamed} was deleted")
    replaced = {"name": name, "email": email, "team": "qa"}
    await ada.api("PUT", f"/api/t/acme/people/{person['id']}", replaced)
    await expect(bob.page.locator("#fdbsync-person h2.name")).to_have_text(name)
    await expect(ada.row(name)).to_have_count(1)
    await ada.not_reloaded()
    await bob.not_reloaded()


# -- a restart -----------------------------------------------------------------------------------


async def change_while_down(server: AppServer, charles_id: str) -> None:
    """What another process might do while the server is down: through the database."""
    async with create_engine(server.db_url) as engine:
        acme = Repo(engine, models=[Person, Pin, SignIn], multi_tenant=True).tenants.bind("acme")
        await acme.insert(Person(name="Katherine Johnson", email="kj@acme.test", team="nasa"))
        charles = await acme.get(Person, charles_id)
        assert charles is not None
        await acme.update(charles, {"name": "Charles X. Babbage"})
        dennis = await acme.get_by(Person, {"email": "dennis@acme.test"})
        assert dennis is not None
        await acme.delete(dennis)
        edsger = await acme.get_by(Person, {"email": "edsger@acme.test"})
        assert edsger is not None
        await acme.insert(Pin(id=edsger.id))


@HTMX
async def test_pages_recover_after_a_restart_and_show_the_database(
    app_server: StartServer, two_tabs: Tabs, htmx: int
) -> None:
    server = await asyncio.to_thread(app_server, 1)
    ada, bob = await two_tabs(server.url, htmx)
    people = await ada.api("GET", "/api/t/acme/people")
    charles = next(p for p in people if p["name"] == "Charles Babbage")
    await bob.goto(f"/t/acme/people/{charles['id']}")
    await expect(bob.page.locator("#fdbsync-person h2.name")).to_have_text("Charles Babbage")

    marks = {tab: len(tab.errors) for tab in (ada, bob)}
    await asyncio.to_thread(server.stop)
    await change_while_down(server, charles["id"])
    await asyncio.to_thread(server.start)  # the same port

    await expect(ada.row("Katherine Johnson")).to_have_count(1, timeout=RECOVER_MS)
    await expect(ada.row("Dennis Ritchie")).to_have_count(0, timeout=SHOW_MS)
    await expect(ada.row("Charles X. Babbage")).to_have_count(1, timeout=SHOW_MS)
    await expect(ada.pinned("Edsger Dijkstra")).to_have_count(1, timeout=SHOW_MS)
    await expect(ada.team_link("nasa")).to_have_count(1, timeout=SHOW_MS)
    await expect(bob.page.locator("#fdbsync-person h2.name")).to_have_text(
        "Charles X. Babbage", timeout=RECOVER_MS
    )
    # While the server was away htmx logged each failed reconnect to the console: expected.
    # Uncaught errors (pageerror) and error answers are not, nor anything from here on.
    for tab, mark in marks.items():
        tab.errors[mark:] = [e for e in tab.errors[mark:] if not e.startswith("console:")]

    # ...and they follow changes again.
    await ada.api("PATCH", f"/api/t/acme/people/{charles['id']}", {"name": "Charles Babbage"})
    await expect(bob.page.locator("#fdbsync-person h2.name")).to_have_text("Charles Babbage")
    await expect(ada.row("Charles Babbage")).to_have_count(1)
    await ada.not_reloaded()
    await bob.not_reloaded()


# -- phone width ---------------------------------------------------------------------------------

PHONE: ViewportSize = {"width": 390, "height": 844}


async def assert_no_sideways_scroll(tab: Tab, what: str) -> None:
    widths = await tab.page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth, document.body.scrollWidth]"
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[1], (what, widths)


async def test_no_page_scrolls_sideways_at_phone_width(
    shared_server: str, browser: Browser
) -> None:
    tab = await new_tab(browser, shared_server, "ada@acme.test", 4, viewport=PHONE)
    try:
        assert await tab.page.evaluate("window.innerWidth") == PHONE["width"]
        # The longest values the app accepts, without a space to break a line at.
        tag = unique()
        name = f"{tag}" + "N" * (100 - len(tag))
        email = f"{tag}" + "e" * (200 - len(tag) - len("@example.test")) + "@example.test"
        team = f"t{tag}" + "x" * (40 - len(tag) - 1)
        person = await tab.api(
            "POST", "/api/t/acme/people", {"name": name, "email": email, "team": team}
        )
        await tab.api("POST", f"/t/acme/people/{person['id']}/pin")
        await expect(tab.row(name)).to_have_count(1)
        await assert_no_sideways_scroll(tab, "people")
        await tab.row(name).get_by_role("button", name="Edit").click()
        await expect(tab.page.locator("#editor h2")).to_have_text(f"Edit {name}")
        await assert_no_sideways_scroll(tab, "people, editing")
        await tab.goto(f"/t/acme/teams/{team}")
        await expect(tab.page.locator("#fdbsync-members a.name")).to_have_text([name])
        await assert_no_sideways_scroll(tab, "team")
        await tab.goto(f"/t/acme/people/{person['id']}")
        await expect(tab.page.locator("#fdbsync-person h2.name")).to_have_text(name)
        await assert_no_sideways_scroll(tab, "person")
        await tab.api("DELETE", f"/api/t/acme/people/{person['id']}")
        await expect(tab.page.locator("#fdbsync-person h2.gone")).to_contain_text("was deleted")
        await assert_no_sideways_scroll(tab, "person, deleted")
        await tab.goto("/t/acme/people/" + "no-such-person-" + "0" * 60)
        await assert_no_sideways_scroll(tab, "person, unknown id")
        assert tab.errors == []
    finally:
        await tab.page.context.close()


async def test_no_sign_in_page_scrolls_sideways_at_phone_width(
    shared_server: str, browser: Browser
) -> None:
    context = await browser.new_context(viewport=PHONE)
    try:
        tab = Tab(await context.new_page(), shared_server, 4)
        await tab.page.goto(shared_server + "/signin")
        await expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
        await assert_no_sideways_scroll(tab, "sign in")
    finally:
        await context.close()


# -- the screenshot ------------------------------------------------------------------------------


async def test_screenshot_of_the_seeded_people_page(
    app_server: StartServer, browser: Browser
) -> None:
    server = await asyncio.to_thread(app_server, 1)
    tab = await new_tab(browser, server.url, "ada@acme.test", 4)
    try:
        rows = tab.page.locator("#fdbsync-people li.person")
        await expect(rows).to_have_count(5)
        await expect(tab.pinned("Ada Lovelace")).to_have_count(1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "people.png"
        image = await tab.page.screenshot(path=shot, full_page=True)
        assert image[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(image[16:20], "big")
        assert width == 1280, width
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_IMAGE)
        assert tab.errors == []
    finally:
        await tab.page.context.close()
