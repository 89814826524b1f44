"""Activating a workflow in a real browser (Debian's Chromium via Playwright, against
``streamlit run``, the platform DB and the session's Prefect server), as a client: the form asks
only for the client's own settings; wrong values are each named under their own field and
nothing is saved; corrected, the activation stores the client's values with the agency's
defaults. The workflow's picture is drawn on the Workflows and Catalog pages, grey before any
run and coloured by the last run after one (a run of ``daily_digest`` in this process whose
source answers 404: the first step red, the others grey)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from flows.daily_digest import DailyDigestSettings, daily_digest
from portal.components.workflow_graph import COLOURS
from services import workspace
from tests.fixtures._browser import ARTIFACTS, launch_chromium, portal_process
from tests.fixtures.http_server import HttpServer
from tests.fixtures.portal import PASSWORD, PortalWorld

pytestmark = pytest.mark.timeout(420)
WAIT = 30_000  # ms: one Streamlit rerun against Prefect stays well below this
STEPS = ("Fetch your data", "Summarise it with AI", "Email the digest")
T = TypeVar("T")


def _off_loop(call: Callable[[], T]) -> T:
    """Run ``call`` in a thread: Playwright's sync API runs an event loop on this one, under
    which Prefect's sync calls would only return coroutines."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


@contextmanager
def _chromium_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT)
            yield page
        finally:
            browser.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _settle(page: Any) -> None:
    """Let the rerun started by the last input finish."""
    page.wait_for_timeout(500)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden")


def _go(page: Any, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for()
    _settle(page)


def _fill(page: Any, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Tab")
    _settle(page)


def _choose(page: Any, label: str, option: str) -> None:
    for _ in range(3):
        page.get_by_label(label, exact=True).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - a rerun closed the list: open it again
            page.keyboard.press("Escape")
    _settle(page)


def _under(page: Any, label: str) -> Any:
    """The element right after the field labelled ``label`` (where its problems show)."""
    field = page.get_by_label(label, exact=True)
    container = field.locator("xpath=ancestor::div[@data-testid='stElementContainer'][1]")
    return container.locator("xpath=following-sibling::div[1]")


def _step_fill(page: Any, title: str) -> str:
    """The fill colour of the drawn step titled ``title``."""
    node = page.locator("svg g.node", has_text=title).first
    return str(node.locator("path, polygon").first.get_attribute("fill"))


def _no_deployment(client: str) -> bool:
    with get_client(sync_client=True) as api:
        try:
            api.read_deployment_by_name(f"daily_digest/{client}")
        except ObjectNotFound:
            return True
    return False


def test_a_client_activates_with_field_errors_first_and_sees_the_picture(
    portal_world: PortalWorld, http_server: HttpServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT)
    w = portal_world
    smtp = {"host": "mail.acme.test", "from_address": "digest@acme.test", "security": "none"}
    workspace.save_credential(w.settings, w.a, "smtp", "default", smtp)
    workspace.save_credential(w.settings, w.a, "openai", "default", {"api_key": "sk-test"})
    missing = http_server.url("/no-such-feed")  # answers 404: the run fails at its first step

    with portal_process(w.settings, tmp_path / "portal.log") as url, _chromium_page() as page:
        page.goto(url)
        page.get_by_label("Email", exact=True).fill(w.email_a)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Catalog", level=1).wait_for()

        _go(page, "Workflows")
        for title in STEPS:  # the picture, before any run: every step grey
            expect(page.locator("svg g.node", has_text=title)).to_have_count(1)
            assert _step_fill(page, title) == COLOURS["not_run"][0]
        # only the client's own settings: the agency's and the credential names are hidden
        for hidden in ("Instructions", "Model", "LLM credential", "Email credential"):
            expect(page.get_by_label(hidden, exact=True)).to_have_count(0)
        expect(page.get_by_text("Uses your Email account (SMTP) · default.")).to_be_visible()

        _fill(page, "Source URL *", "https://")
        _fill(page, "Recipients *", "team@acme.test\nnot-an-email")
        _choose(page, "When", "Custom cron")
        _fill(page, "Cron expression", "61 7 * * *")
        _fill(page, "Time zone", "Mars/Olympus")
        page.get_by_role("button", name="Activate").click()
        _settle(page)
        nothing_saved = page.get_by_text("Nothing was saved: correct the fields marked above.")
        expect(nothing_saved).to_be_visible()
        expect(_under(page, "Source URL *")).to_contain_text(
            "'https://' is not a web address (it starts with https:// or http://)."
        )
        expect(_under(page, "Recipients *")).to_contain_text(
            "Line 2: 'not-an-email' is not an email address (like name@example.com)."
        )
        expect(_under(page, "Cron expression")).to_contain_text(
            "Invalid cron expression '61 7 * * *'"
        )
        expect(_under(page, "Time zone")).to_contain_text("Unknown time zone 'Mars/Olympus'")
        # a right field stays quiet
        expect(_under(page, "Subject").get_by_test_id("stAlert")).to_have_count(0)
        _shot(page, "activation-01-field-errors")
        assert _off_loop(lambda: workspace.activations(w.settings, w.a)) == []
        assert _off_loop(lambda: workspace.history(w.settings, w.a, "daily_digest")) == []
        assert _off_loop(lambda: _no_deployment(w.client_a))

        # each problem leaves as its field is corrected; the rest stay where they are
        _fill(page, "Source URL *", missing)
        expect(_under(page, "Source URL *")).not_to_contain_text("web address")
        expect(_under(page, "Recipients *")).to_contain_text("not-an-email")
        _fill(page, "Recipients *", "team@acme.test\nops@acme.test")
        _fill(page, "Cron expression", "30 6 * * 1-5")
        _fill(page, "Time zone", "Europe/Berlin")
        expect(page.get_by_text("Nothing was saved")).to_have_count(0)
        page.get_by_role("button", name="Activate").click()
        expect(page.get_by_text("Daily digest is active (version 1).")).to_be_visible()
        _shot(page, "activation-02-activated")

        (act,) = _off_loop(lambda: workspace.activations(w.settings, w.a))
        assert (act.cron, act.timezone, act.status) == ("30 6 * * 1-5", "Europe/Berlin", "active")
        defaults = DailyDigestSettings.model_fields
        assert act.settings == {
            "source_url": missing,
            "source_credential": None,
            "recipients": ["team@acme.test", "ops@acme.test"],
            "subject": defaults["subject"].default,
            "instructions": defaults["instructions"].default,  # the agency's default
            "model": None,
            "openai_credential": "default",  # bound by itself: the only one
            "smtp_credential": "default",
        }

        def run_once() -> None:
            with tags(f"client:{w.client_a}", "workflow:daily_digest"):
                daily_digest(w.client_a, DailyDigestSettings(**act.settings), return_state=True)

        _off_loop(run_once)
        _go(page, "Catalog")
        card = page.get_by_test_id("stVerticalBlock").filter(
            has=page.get_by_role("heading", name="Daily digest")
        )
        for title in STEPS:
            expect(card.locator("svg g.node", has_text=title).first).to_be_visible()
        assert _step_fill(page, "Fetch your data") == COLOURS["failed"][0]
        assert _step_fill(page, "Email the digest") == COLOURS["not_run"][0]
        expect(page.locator("svg g.node", has_text="Enrich the lead")).to_have_count(1)
        _shot(page, "activation-03-catalog-pictures")

        _go(page, "Workflows")
        expect(page.get_by_text("Last run of")).to_be_visible()
        assert _step_fill(page, "Fetch your data") == COLOURS["failed"][0]
        assert _step_fill(page, "Summarise it with AI") == COLOURS["not_run"][0]
        _shot(page, "activation-04-workflow-picture")
