"""Connect in a real browser: a client user presses *Connect* on the Credentials page, approves
(or denies) on the provider's consent page — the real Authlib server of
tests/fixtures/oauth_server.py — and is told the outcome on the gateway's page and back in the
portal tab where they started."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import blocks
from agency.errors import CredentialMissing
from services.connections import redirect_uri, register_app
from tests.fixtures._browser import launch_chromium, portal_process
from tests.fixtures.gateway import serve
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.portal import PASSWORD, PortalWorld

pytestmark = pytest.mark.timeout(300)
WAIT = 30_000  # ms


def _stored(client: str) -> blocks.CredentialModel | None:
    """The client's google/default credential, read off Playwright's event loop (Prefect's sync
    calls turn into coroutines inside a running loop)."""

    def read() -> blocks.CredentialModel | None:
        try:
            return blocks.load_credential(client, "google", "default")
        except CredentialMissing:
            return None

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(read).result()


def test_connect_and_deny_in_the_browser(
    portal_world: PortalWorld, oauth_server: OAuthServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    w = portal_world
    gateway = serve(w.settings, run_dispatcher=False)
    w.settings.public_base_url = gateway.url
    oauth_server.register_client(
        "agency-app", "app-secret", [redirect_uri(w.settings)], "openid email"
    )
    register_app(
        w.settings,
        None,
        "google",
        "agency-app",
        "app-secret",
        {
            "authorize_url": oauth_server.authorize_url,
            "token_url": oauth_server.token_url,
            "userinfo_url": oauth_server.userinfo_url,
            "scopes": {"identity": ["openid", "email"]},
        },
    )
    env = {"AGENCY_PUBLIC_BASE_URL": gateway.url}
    try:
        with (
            portal_process(w.settings, tmp_path / "portal.log", **env) as url,
            sync_playwright() as pw,
        ):
            w.settings.portal_url = url  # the gateway's "Back to the portal" link
            browser = launch_chromium(pw)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(WAIT)
                page.goto(url)
                page.get_by_label("Email", exact=True).fill(w.email_a)
                page.get_by_label("Password", exact=True).fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Catalog", level=1).wait_for()
                nav = page.get_by_test_id("stSidebarNav")
                nav.get_by_role("link", name="Credentials").click()
                page.get_by_role("heading", name="Connected accounts").wait_for()
                # other tests of this session may have registered more providers' apps
                google = page.get_by_test_id("stHorizontalBlock").filter(has_text="Google")
                connect = google.get_by_role("link", name="Connect", exact=True)

                # deny: a clear message on both sides, nothing stored
                first_link = connect.get_attribute("href")
                with page.context.expect_page() as opened:
                    connect.click()
                provider = opened.value
                provider.locator("#deny").click()
                expect(provider.locator("#outcome")).to_contain_text("you declined access")
                provider.close()
                expect(page.get_by_text("Nothing was stored")).to_be_visible()
                assert _stored(w.client_a) is None

                # approve: "Connected as ..." where the user started, through a new link (the
                # used one is refused). Click exactly that new link once the re-run has finished:
                # a negated expect passes while the row is briefly absent mid-render
                idle = page.locator("[data-testid='stApp'][data-test-script-state='notRunning']")
                fresh = google.locator("a", has_text="Connect").and_(
                    google.locator(f"a:not([href='{first_link}'])")
                )
                fresh.wait_for()
                idle.wait_for()
                new_link = fresh.get_attribute("href")
                assert new_link and new_link != first_link
                started = time.perf_counter()
                with page.context.expect_page() as opened:
                    google.locator(f"a[href='{new_link}']").click()
                provider = opened.value
                consent_or_refusal = provider.locator("#email").or_(provider.locator("#outcome"))
                consent_or_refusal.wait_for()
                assert provider.locator("#email").count() == 1, provider.inner_text("body")
                provider.locator("#email").fill("boss@acme.com")
                provider.locator("#approve").click()
                expect(provider.locator("#outcome")).to_have_text(
                    "Google connected as boss@acme.com."
                )
                back = provider.locator("#back")
                assert back.get_attribute("href", timeout=WAIT) == f"{url}/client-credentials"
                provider.close()
                expect(page.get_by_text("Google connected as boss@acme.com.")).to_be_visible()
                row = page.get_by_test_id("stHorizontalBlock")
                expect(row.get_by_text("Connected as boss@acme.com")).to_be_visible()
                print(f"connect flow in the browser: {time.perf_counter() - started:.1f} s")
                stored = _stored(w.client_a)
                assert stored.account == "boss@acme.com"  # type: ignore[attr-defined]
                token = stored.access_token.get_secret_value()  # type: ignore[attr-defined]
                assert token not in page.content()
            finally:
                browser.close()
    finally:
        gateway.stop()
