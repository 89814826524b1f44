"""Portal load: time from click to rendered content of every portal page in headless Chromium,
with 5,000 runs of 50 clients in Prefect (goal: < 1 s each).

Run ``python -m benchmarks.portal_load`` (``--quick``: 1,000 runs, 5 rounds). It starts its own
Prefect server and a platform DB with 50 clients, records the flow runs (each Running, then its
final state, so it has a start time as executed runs do; 4 at a time: Prefect on SQLite answers
503 to more): 1,000 for client A (2 % failed with a reason to explain, 0.5 % waiting, the rest
completed; a sixth of them of ``event_archive``), none for client B, the others spread over the
remaining 48 clients; and one LLM call per run in the platform DB. Client A has ``daily_digest``
and ``event_archive`` activated (so their pictures read the last run), the webhook of
``event_archive`` enabled with 50 deliveries; the demo inbox holds 20 emails. It serves the
portal with ``streamlit run`` and signs in A's and B's users and an agency user, each in its own
Chromium tab. Each round clicks, in turn, every page: A's Catalog (pictures of the active
workflows), Credentials, Workflows (Daily digest: picture, form, version history), then picks
Event archive there (picture and the deliveries list), Runs (failures first, a page of the rest),
Approvals, Usage and Notifications; the baseline Runs (B, no runs: the same page and round trips
without the data); the agency's Clients, All runs, Costs (every client's usage of the month),
Account connections, Releases, Demo inbox and Change password. A sample is the time from the
click until the page's content is on screen and the script has finished. Prints
``metric=value`` lines (medians and maxima in seconds), the headline last.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._prefect import prefect_server

RUNS = 5000
CLIENT_A_RUNS = 1000
CLIENTS = 50
PASSWORD = "benchmark password"
FAILURE = (
    "Flow run encountered an exception: TransientNodeError: GET https://api.example.test/people "
    "answered 503: busy"
)


def _plan(client_a: str, others: list[str], runs: int) -> list[tuple[str, str, str]]:
    """``(client, workflow, final state type)`` of every run to record."""
    own = min(CLIENT_A_RUNS, runs)
    plan = []
    for i in range(own):
        state = "FAILED" if i % 50 == 7 else "PAUSED" if i % 200 == 3 else "COMPLETED"
        workflow = "event_archive" if i % 6 == 5 else "daily_digest" if i % 3 else "offers"
        plan.append((client_a, workflow, state))
    for i in range(runs - own):
        state = "FAILED" if i % 40 == 5 else "COMPLETED"
        plan.append((others[i % len(others)], "daily_digest", state))
    return plan


def _seed(plan: list[tuple[str, str, str]]) -> None:
    """Record the planned flow runs: created Running, then set to their final state."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State, StateType
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.flows import Flow

    def body() -> None:
        """Stand-in flow: the benchmark records runs, it does not execute them."""

    flows = {name: Flow(fn=body, name=name) for name in {w for _, w, _ in plan}}

    async def again(call: Callable[[], Awaitable[Any]]) -> Any:
        """Retry a call the busy SQLite server answered 503 (5 tries, 1 s apart)."""
        for attempt in range(5):
            try:
                return await call()
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 503 or attempt == 4:
                    raise
                await asyncio.sleep(1)

    async def seed() -> None:
        async with get_client() as api:
            gate = asyncio.Semaphore(4)

            async def one(client: str, workflow: str, final: str) -> None:
                tags = [f"client:{client}", f"workflow:{workflow}", "trigger:cron"]
                end = State(type=StateType(final), message=FAILURE if final == "FAILED" else None)
                async with gate:
                    run = await again(
                        lambda: api.create_flow_run(
                            flows[workflow], tags=tags, state=State(type=StateType.RUNNING)
                        )
                    )
                    await again(lambda: api.set_flow_run_state(run.id, end, force=True))

            await asyncio.gather(*(one(*p) for p in plan))

    asyncio.run(seed())


def _seed_llm(url: str, plan: list[tuple[str, str, str]]) -> None:
    """One LLM call per planned run in the platform DB (``llm_usage``)."""
    from agency.db import LlmUsage, session_scope

    with session_scope(url) as session:
        session.add_all(
            LlmUsage(
                client=client,
                workflow=workflow,
                model="gpt-4o-mini",
                prompt_tokens=900,
                completion_tokens=100,
                total_tokens=1000,
                cost_usd=0.00021,
            )
            for client, workflow, _ in plan
        )


def _seed_client_a(settings: Any, client: str) -> None:
    """Activate ``daily_digest`` and ``event_archive`` for ``client``, enable the webhook of
    ``event_archive`` and record 50 of its deliveries (each dispatched to a run)."""
    import uuid

    from agency.db import session_scope
    from deployments import ensure_work_pool
    from deployments.webhooks.outbox import Submission, accept, find_target, mark_dispatched
    from services import activate
    from services.webhooks import enable_webhook

    ensure_work_pool(settings.work_pool)
    digest = {"source_url": "https://api.example.test/today", "recipients": ["team@example.test"]}
    activate(settings, client, "daily_digest", digest, None)
    activate(settings, client, "event_archive", {}, None)
    enable_webhook(settings, client, "event_archive")
    with session_scope(settings.platform_database_url) as session:
        target = find_target(session, client, "event_archive")
        assert target is not None
        ids = [
            accept(session, Submission(target, {"order": n}, f"k{n}", "bench", 1000)).delivery_id
            for n in range(50)
        ]
    with session_scope(settings.platform_database_url) as session:
        for delivery in ids:
            mark_dispatched(session, delivery, str(uuid.uuid4()))


def _seed_inbox(settings: Any) -> None:
    """20 emails in the demo mail catcher's Maildir."""
    import mailbox
    from email.message import EmailMessage

    from services.demo.layout import DemoLayout

    inbox = DemoLayout.of(settings).inbox
    inbox.parent.mkdir(parents=True, exist_ok=True)
    box = mailbox.Maildir(inbox, create=True)
    for n in range(20):
        message = EmailMessage()
        message["From"] = "digest@demo.test"
        message["To"] = "team@demo.test"
        message["Subject"] = f"Daily digest {n}"
        message.set_content(f"Today's figures, number {n}.")
        box.add(message)


def _load() -> str:
    """The machine's load average over 1, 5 and 15 minutes (the figures depend on it)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _sign_in(page: Any, url: str, email: str, home: str = "Catalog") -> None:
    page.goto(url)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=home, level=1).wait_for()


def _finished(page: Any) -> None:
    """Wait until the page's script run has finished (the status widget only shows up late)."""
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()


def _timed(page: Any, title: str, content: str) -> float:
    """Seconds from the sidebar click on ``title`` to ``content`` shown and the run finished."""
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title)
    if not link.is_visible():  # a long navigation shows its first pages and "View more"
        page.get_by_test_id("stSidebarNavViewButton").click()
        link.wait_for()
    start = time.perf_counter()
    link.click()
    page.get_by_role("heading", name=title, level=1).wait_for()
    page.locator(content).first.wait_for()
    _finished(page)
    return time.perf_counter() - start


def _pick(page: Any, option: str) -> None:
    """Choose ``option`` in the Workflows page's workflow box."""
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def _timed_webhook(page: Any, other: str, webhook: str) -> float:
    """Seconds from picking the webhook workflow on Workflows to its deliveries on screen."""
    box = page.get_by_test_id("stSelectbox").first
    if webhook in box.inner_text():  # the choice outlived the page switch: start from another
        _pick(page, other)
        page.locator("text=Recent deliveries").wait_for(state="detached")
        _finished(page)
    start = time.perf_counter()
    _pick(page, webhook)
    page.locator("text=Recent deliveries").first.wait_for()
    _finished(page)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and rounds")
    args = parser.parse_args()
    rounds = 5 if args.quick else 20
    seeded = 1000 if args.quick else RUNS

    with prefect_server():
        from playwright.sync_api import sync_playwright

        from agency.db import upgrade
        from agency.settings import Settings
        from services import add_client, create_user
        from tests.fixtures._browser import launch_chromium, portal_process

        home = Path(tempfile.mkdtemp(prefix="bench-portal-"))
        settings = Settings(home=home)
        upgrade(settings.platform_database_url)
        tag = secrets.token_hex(3)
        clients = [f"bench-{i:02d}-{tag}" for i in range(CLIENTS)]
        client_a, client_b = clients[0], clients[1]
        for client in clients:
            add_client(settings, client, client)
        for client in (client_a, client_b):
            create_user(settings, f"user@{client}.test", PASSWORD, "client", client)
        staff = f"staff-{tag}@agency.test"
        create_user(settings, staff, PASSWORD, "agency")
        plan = _plan(client_a, clients[2:], seeded)
        started = time.perf_counter()
        _seed(plan)
        _seed_llm(settings.platform_database_url, plan)
        _seed_client_a(settings, client_a)
        _seed_inbox(settings)
        print(f"seeded_runs={len(plan)}", flush=True)
        print(f"client_a_runs={sum(c == client_a for c, _, _ in plan)}", flush=True)
        print(f"clients={len(clients)}", flush=True)
        print(f"seed_s={time.perf_counter() - started:.1f}", flush=True)

        from flows.catalog import get_workflow

        table = "[data-testid='stDataFrame']"
        form = "[data-testid='stFormSubmitButton']"
        digest, archive = (get_workflow(w).title for w in ("daily_digest", "event_archive"))
        # (sample name, tab, sidebar title, content shown when the page is rendered)
        pages = (
            ("catalog", "a", "Catalog", "text=Prebuilt workflows your agency"),
            ("credentials", "a", "Credentials", form),
            ("workflows", "a", "Workflows", "text=Version history"),
            ("workflows_webhook", "a", None, None),
            ("runs", "a", "Runs", "text=Needs your attention"),
            ("approvals", "a", "Approvals", "text=No approval requests."),
            ("usage", "a", "Usage", table),
            ("notifications", "a", "Notifications", form),
            ("runs_empty", "b", "Runs", "text=No runs yet in these days."),
            ("clients_agency", "s", "Clients", table),
            ("all_runs_agency", "s", "All runs", table),
            ("costs_agency", "s", "Costs", "text=Usage for invoicing"),
            ("connections_agency", "s", "Account connections", "text=Registered apps"),
            ("releases_agency", "s", "Releases", "text=Roll a client back"),
            ("inbox_agency", "s", "Demo inbox", "[data-testid='stExpander']"),
            ("password_agency", "s", "Change password", form),
        )
        samples: dict[str, list[float]] = {name: [] for name, *_ in pages}
        with portal_process(settings, home / "portal.log") as url, sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                tabs = {
                    tab: browser.new_page(viewport={"width": 1400, "height": 1000}) for tab in "abs"
                }
                for page in tabs.values():
                    page.set_default_timeout(60_000)
                _sign_in(tabs["a"], url, f"user@{client_a}.test")
                _sign_in(tabs["b"], url, f"user@{client_b}.test")
                _sign_in(tabs["s"], url, staff, home="Clients")

                def sample(name: str, tab: str, title: str | None, content: str | None) -> float:
                    if title is None:
                        return _timed_webhook(tabs[tab], digest, archive)
                    return _timed(tabs[tab], title, content or "body")

                # warm-up: first renders import page modules and open API connections
                for name, *where in pages:
                    sample(name, *where)
                _timed(tabs["b"], "Catalog", "text=Prebuilt workflows your agency")
                print(f"load_average_at_start={_load()}", flush=True)
                for done in range(rounds):
                    for name, *where in pages:
                        samples[name].append(sample(name, *where))
                    # B's tab leaves Runs, so its next Runs click renders the page anew
                    _timed(tabs["b"], "Catalog", "text=Prebuilt workflows your agency")
                    print(f"round={done + 1} load_average={_load()}", flush=True)
            finally:
                browser.close()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"rounds={rounds}")
    print(f"load_average_at_end={_load()}")
    for name, values in samples.items():
        print(f"{name}_median_s={medians[name]:.3f}")
        print(f"{name}_max_s={max(values):.3f}")
    print(f"runs_vs_empty_ratio={medians['runs'] / medians['runs_empty']:.2f}")
    slowest = max(medians, key=medians.__getitem__)
    print(f"goal_met={medians[slowest] < 1.0}")
    print(f"slowest_page={slowest}")
    print(f"slowest_page_median_s={medians[slowest]:.3f}")


if __name__ == "__main__":
    main()
