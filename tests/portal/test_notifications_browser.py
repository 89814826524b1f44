"""Notification preferences in a real browser (Debian's Chromium against ``streamlit run``): a
client user switches "A run failed" off, saves, signs in again after a reload and finds it still
off; agency staff have the same page. A screenshot goes to ``build/test-artifacts/portal/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.notifications import get_preferences
from tests.fixtures._browser import ARTIFACTS, launch_chromium, portal_process
from tests.fixtures.portal import PASSWORD, PortalWorld

pytestmark = pytest.mark.timeout(300)
WAIT = 30_000  # ms


def _sign_in(page: Any, email: str) -> None:
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _open_notifications(page: Any) -> None:
    nav = page.get_by_test_id("stSidebarNav")
    nav.wait_for()
    more = nav.get_by_test_id("stSidebarNavViewButton")  # a long list shows "View more"
    if more.count() and "more" in more.inner_text().lower():
        more.click()
    nav.get_by_role("link", name="Notifications").click()
    page.get_by_role("heading", name="Notifications", level=1).wait_for()


def test_a_switched_off_kind_stays_off_after_a_reload(
    portal_world: PortalWorld, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    w = portal_world
    with portal_process(w.settings, tmp_path / "portal.log") as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT)
            page.goto(url)
            _sign_in(page, w.email_a)
            page.get_by_role("heading", name="Catalog", level=1).wait_for()
            _open_notifications(page)
            failed = page.get_by_role("switch", name="A run failed")
            expect(failed).to_be_checked()
            expect(page.get_by_role("switch", name="An approval is waiting")).to_be_checked()
            page.get_by_text("A run failed", exact=True).click()
            expect(failed).not_to_be_checked()
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_text("Your notification choices are saved.")).to_be_visible()
            assert get_preferences(w.settings, w.a)["run_failed"] is False

            # load the portal again (a new session; its root: the page's own URL would first
            # meet the sign-in page's "page not found")
            page.goto(url)
            sign_in = page.get_by_role("heading", name="Sign in")
            sign_in.or_(page.get_by_test_id("stSidebarNav")).first.wait_for()
            if sign_in.is_visible():  # a reload starts a new session
                _sign_in(page, w.email_a)
            _open_notifications(page)
            expect(page.get_by_role("switch", name="A run failed")).not_to_be_checked()
            expect(page.get_by_role("switch", name="A scheduled run is late")).to_be_checked()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "notifications.png"), full_page=True)

            # another client's user still gets everything; agency staff have the page too
            assert all(get_preferences(w.settings, w.b).values())
            agency = browser.new_page(viewport={"width": 1400, "height": 1000})
            agency.set_default_timeout(WAIT)
            agency.goto(url)
            _sign_in(agency, w.agency_email)
            agency.get_by_role("heading", name="Clients", level=1).wait_for()
            _open_notifications(agency)
            expect(agency.get_by_role("switch", name="A run failed")).to_be_checked()
        finally:
            browser.close()
