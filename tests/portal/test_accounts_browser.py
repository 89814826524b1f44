"""Run outputs in a real browser (Debian's Chromium against ``streamlit run``): the download
reaches the signed-in client's tab without any ``/media/`` URL (Streamlit serves those to any
request, signed in or not), and a client suspended while its tab is open gets no file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from agency.db import Client, session_scope
from services import runs
from tests.fixtures._browser import launch_chromium, portal_process
from tests.fixtures.portal import PASSWORD, PortalWorld, make_run

pytestmark = pytest.mark.timeout(300)
WAIT = 30_000  # ms


def _suspend(world: PortalWorld) -> None:
    with session_scope(world.settings.platform_database_url) as session:
        client = session.scalar(select(Client).where(Client.slug == world.client_a))
        assert client is not None
        client.status = "suspended"


def test_output_download_goes_over_the_session_and_stops_at_suspension(
    portal_world: PortalWorld, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    w = portal_world
    run_id = make_run(w.client_a, secret_marker="echo")
    (artifact,) = runs.run_artifacts(w.settings, w.a, run_id)
    with portal_process(w.settings, tmp_path / "portal.log") as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT)
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url))
            page.goto(url)
            page.get_by_label("Email", exact=True).fill(w.email_a)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Catalog", level=1).wait_for()
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Runs").click()
            page.get_by_role("heading", name="Runs", level=1).wait_for()

            with page.expect_download() as started:
                page.get_by_role("button", name="Download", exact=True).click()
            download = started.value
            assert download.suggested_filename == artifact.filename
            assert Path(download.path()).read_bytes() == artifact.content()
            assert not [u for u in asked if u.startswith(f"{url}/media/")], asked

            _suspend(w)
            page.get_by_role("button", name="Download", exact=True).click()
            page.get_by_role("heading", name="Sign in").wait_for()
            suspended = page.get_by_text("This account is suspended. Contact your agency.")
            expect(suspended).to_be_visible()
            assert not [u for u in asked if u.startswith(f"{url}/media/")], asked
        finally:
            browser.close()
