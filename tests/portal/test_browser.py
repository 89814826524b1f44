"""The portal in a real browser: Debian's Chromium (Playwright) against ``streamlit run``, the real
Prefect server and worker, and local HTTP, LLM and SMTP servers. A client user signs in, saves a
credential, activates ``daily_digest``, presses "Run now", sees the run complete with its output,
and answers an approval. A screenshot of each page goes to ``build/test-artifacts/portal/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from services import workspace
from tests.fixtures._browser import ARTIFACTS, launch_chromium, portal_process
from tests.fixtures.http_server import HttpServer, Reply
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.portal import PASSWORD, PendingApproval, PortalWorld
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.worker import Worker

pytestmark = pytest.mark.timeout(420)
WAIT = 30_000  # ms: one Streamlit rerun against Prefect stays well below this


@contextmanager
def _chromium_page() -> Iterator[Any]:
    """A Chromium tab. Started after the test's own Prefect calls: Playwright's sync API runs an
    event loop on this thread, under which Prefect's sync-compatible calls (``Block.save``)
    would only return coroutines."""
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


def _go(page: Any, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for()
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden")


def _fill(page: Any, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Tab")


def _settle(page: Any) -> None:
    """Let a rerun started by the last input finish (the dropdown closes when a rerun lands)."""
    page.wait_for_timeout(500)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden")


def _choose(page: Any, label: str, option: str) -> None:
    _settle(page)
    for _ in range(3):
        page.get_by_label(label, exact=True).click()
        choice = page.get_by_role("option", name=option, exact=True)
        try:
            choice.click(timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - a rerun closed the list: open it again
            page.keyboard.press("Escape")
    _settle(page)


def test_client_journey_in_chromium(
    portal_world: PortalWorld,
    prefect_worker: Worker,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT)
    w = portal_world
    settings = w.settings.model_copy(update={"work_pool": prefect_worker.pool})
    http_server.respond("/today", Reply(json={"items": ["zephyr sales up 42%"]}))
    llm_server.reply_next("Zephyr sales rose 42%.")
    workspace.save_credential(
        settings,
        w.a,
        "smtp",
        "default",
        {
            "host": smtp_server.host,
            "port": smtp_server.port,
            "username": smtp_server.username,
            "password": smtp_server.password,
            "from_address": "digest@agency.test",
            "security": "none",
        },
    )

    assert [(c.kind, c.name) for c in workspace.credentials(settings, w.a)] == [("smtp", "default")]
    with portal_process(settings, tmp_path / "portal.log") as url, _chromium_page() as page:
        page.goto(url)
        page.get_by_role("heading", name="Sign in").wait_for()
        _shot(page, "01-sign-in")
        page.get_by_label("Email", exact=True).fill(w.email_a)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Catalog", level=1).wait_for()
        expect(page.get_by_text("Daily digest").first).to_be_visible()
        _shot(page, "02-catalog")

        _go(page, "Credentials")
        _choose(page, "What to add", "AI model (OpenAI-compatible)")
        page.get_by_label("API key *", exact=True).fill(llm_server.api_key)
        page.get_by_label("Base URL", exact=True).fill(llm_server.base_url)
        page.get_by_role("button", name="Test connection").click()
        expect(page.get_by_text(re.compile("model\\(s\\) available"))).to_be_visible()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Saved AI model (OpenAI-compatible) 'default'")).to_be_visible()
        expect(page.get_by_text(llm_server.api_key)).to_have_count(0)
        _shot(page, "03-credentials")

        _go(page, "Workflows")
        _fill(page, "Source URL *", http_server.url("/today"))
        page.get_by_label("Recipients *", exact=True).fill("team@acme.test")
        page.get_by_label("Recipients *", exact=True).press("Tab")
        _choose(page, "When", "No schedule (run manually)")
        page.get_by_role("button", name="Activate").click()
        expect(page.get_by_text("Daily digest is active (version 1).")).to_be_visible()
        _shot(page, "04-workflows")

        _go(page, "Runs")
        page.get_by_role("button", name="Run now").click()
        # the run list is a data grid: its cells are drawn on a canvas and mirrored in hidden
        # accessible cells, so wait for the cell to exist rather than to be "visible"
        expect(page.get_by_text(re.compile(r"✅ Completed")).first).to_be_attached(timeout=180_000)
        expect(page.get_by_text("Zephyr sales rose 42%.").first).to_be_visible()
        _shot(page, "05-runs")
        assert any("team@acme.test" in m.rcpt_tos for m in smtp_server.messages)

        pending = PendingApproval(w.client_a, "Send the offer to Globex?")
        pending.wait_listed(settings, w.a)
        _go(page, "Approvals")
        expect(page.get_by_text("Send the offer to Globex?")).to_be_visible()
        _shot(page, "06-approvals")
        page.get_by_role("button", name="Approve").click()
        expect(page.get_by_text("Approved: the run continues.")).to_be_visible()
        assert pending.result().approved is True

        _go(page, "Usage")
        _shot(page, "07-usage")
        page.get_by_role("link", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
    assert sorted(p.name for p in ARTIFACTS.glob("0*.png"))[:7] == [
        "01-sign-in.png",
        "02-catalog.png",
        "03-credentials.png",
        "04-workflows.png",
        "05-runs.png",
        "06-approvals.png",
        "07-usage.png",
    ]
