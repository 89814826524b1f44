"""The Runs list puts failed, then waiting runs on top, each failure with its reason in the client's
words (from the states a real flow run records); filters run on the Prefect API; a client never
sees another client's runs or usage. One browser test shows the reason and the Retry button."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow, tags, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Failed

from agency.db import utcnow
from agency.errors import AccessDenied, CredentialMissing, InputInvalid
from services import runs, usage, workspace
from services.failure_words import CANCELLED
from tests.fixtures._browser import ARTIFACTS, launch_chromium, portal_process
from tests.fixtures.portal import PASSWORD, PortalWorld, make_run

DIGEST = {"source_url": "https://api.example.test/today", "recipients": ["team@example.test"]}
MISSING = (
    "The workflow needs an Email account (SMTP) credential named “default”: add it under "
    "Credentials."
)


@task
def _send_digest(client: str) -> None:
    raise CredentialMissing(client, "smtp", "default")


@flow(name="daily_digest")
def _digest(client: str) -> None:
    _send_digest(client)


def failed_run(client: str) -> UUID:
    """A real flow run of ``client`` whose task fails for a missing credential."""
    with tags(f"client:{client}", "workflow:daily_digest"):
        state = _digest(client, return_state=True)
    assert state.type == StateType.FAILED
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def test_failed_then_waiting_on_top_with_reasons(portal_world: PortalWorld) -> None:
    w, s = portal_world, portal_world.settings
    done = make_run(w.client_a)
    waiting = make_run(w.client_a, StateType.PAUSED)
    bad = failed_run(w.client_a)
    cancelled = make_run(w.client_a, StateType.CANCELLED)
    newest = make_run(w.client_a)
    theirs = failed_run(w.client_b)

    page = runs.runs_page(s, w.a)
    assert [r.id for r in page.attention] == [str(bad), str(waiting)]
    assert [r.id for r in page.rest] == [str(newest), str(cancelled), str(done)]
    assert not page.has_more
    first, second = page.attention
    assert first.reason == MISSING and first.failed and first.detail is None
    assert second.waiting and "Approvals" in (second.reason or "")
    assert page.rest[1].reason == CANCELLED and page.rest[0].reason is None
    assert str(theirs) not in [r.id for r in page.runs]

    # the client's logs never carry the error lines or tracebacks; agency staff see the raw
    _, lines = runs.run_details(s, w.a, bad)
    assert not [x for x in lines if x.level >= 40 or "Traceback" in x.message]
    staff = {r.id: r for r in runs.all_runs(s, w.agency)}
    assert staff[str(bad)].reason == MISSING
    assert "CredentialMissing" in (staff[str(bad)].detail or "")
    assert staff[str(theirs)].client == w.client_b

    # a run not started from an activation cannot be retried: one plain sentence
    with pytest.raises(InputInvalid, match="not started from an activation"):
        runs.retry_run(s, w.a, bad)


def test_filters_and_pages_are_applied_by_the_api(portal_world: PortalWorld) -> None:
    w, s = portal_world, portal_world.settings
    digest_ok = make_run(w.client_a)
    offers_ok = make_run(w.client_a, workflow="offers")
    offers_paused = make_run(w.client_a, StateType.PAUSED, workflow="offers")
    bad = failed_run(w.client_a)

    def ids(flt: runs.RunFilter, **kw: int) -> list[str]:
        return [r.id for r in runs.runs_page(s, w.a, flt=flt, **kw).runs]

    assert ids(runs.RunFilter(workflow="offers")) == [str(offers_paused), str(offers_ok)]
    assert ids(runs.RunFilter(states=("Completed",))) == [str(offers_ok), str(digest_ok)]
    assert ids(runs.RunFilter(states=("Waiting", "Failed"))) == [str(bad), str(offers_paused)]
    assert ids(runs.RunFilter(workflow="daily_digest", states=("Failed",))) == [str(bad)]
    today = utcnow().date()
    assert len(ids(runs.RunFilter(since=today, until=today))) == 4
    assert ids(runs.RunFilter(since=today + timedelta(days=1))) == []
    assert ids(runs.RunFilter(until=today - timedelta(days=1))) == []

    first = runs.runs_page(s, w.a, limit=1)
    assert [r.id for r in first.rest] == [str(offers_ok)] and first.has_more
    second = runs.runs_page(s, w.a, limit=1, offset=1)
    assert [r.id for r in second.rest] == [str(digest_ok)] and not second.has_more
    assert [r.id for r in second.attention] == [str(bad)]  # on top of every page (limit 1)


def test_a_client_never_sees_another_clients_runs_or_usage(portal_world: PortalWorld) -> None:
    w, s = portal_world, portal_world.settings
    theirs = make_run(w.client_b, StateType.FAILED)
    month = f"{utcnow():%Y-%m}"
    denied = [
        lambda: runs.runs_page(s, w.a, client=w.client_b),
        lambda: runs.all_runs(s, w.a),
        lambda: usage.month_usage(s, w.a, month, client=w.client_b),
        lambda: usage.month_usage(s, w.a, month, all_clients=True),
        lambda: usage.export_usage(s, w.a, month, client=w.client_b),
        lambda: usage.export_usage(s, w.a, month, all_clients=True),
        lambda: usage.tokens_by_month(s, w.a, client=w.client_b),
    ]
    for call in denied:
        with pytest.raises(AccessDenied):
            call()
    assert str(theirs) not in [r.id for r in runs.runs_page(s, w.a).runs]
    assert usage.month_usage(s, w.a, month) == []
    assert [line.client for line in usage.month_usage(s, w.b, month)] == [w.client_b]


@pytest.mark.timeout(300)
def test_browser_shows_the_reason_and_retries(portal_world: PortalWorld, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    w, s = portal_world, portal_world.settings
    make_run(w.client_a)
    workspace.activate_workflow(s, w.a, "daily_digest", DIGEST, None)
    started = runs.run_now(s, w.a, "daily_digest")
    message = (
        "Flow run encountered an exception: CredentialMissing: "
        f"{CredentialMissing(w.client_a, 'smtp', 'default')}"
    )
    with get_client(sync_client=True) as api:
        api.set_flow_run_state(UUID(started.id), Failed(message=message), force=True)

    with portal_process(s, tmp_path / "portal.log") as url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(url)
            page.get_by_label("Email", exact=True).fill(w.email_a)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Catalog", level=1).wait_for()
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Runs").click()
            page.get_by_role("heading", name="Needs your attention").wait_for()
            expect(page.get_by_text(MISSING)).to_be_visible()
            retry = page.get_by_role("button", name="Retry", exact=True)
            expect(retry).to_have_count(1)
            body = page.locator("body").inner_text()
            assert "CredentialMissing" not in body and "Traceback" not in body
            page.get_by_test_id("stStatusWidget").wait_for(state="hidden")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "runs-failures-first.png"), full_page=True)

            retry.click()
            deadline = time.monotonic() + 30
            while runs.get_run(s, w.a, started.id).state_name != "AwaitingRetry":
                assert time.monotonic() < deadline, "Retry did not reach the run"
                time.sleep(0.5)
            expect(page.get_by_role("button", name="Retry", exact=True)).to_have_count(0)
        finally:
            browser.close()
