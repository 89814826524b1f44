"""Portal load: time from click to rendered content for Catalog, Runs and Usage in headless
Chromium, with 5,000 runs of 50 clients in Prefect (goal: < 1 s each).

Run ``python -m benchmarks.portal_load`` (``--quick``: 1,000 runs, 5 rounds). It starts its own
Prefect server and a platform DB with 50 clients, records the flow runs (each Running, then its
final state, so it has a start time as executed runs do; 4 at a time: Prefect on SQLite answers
503 to more): 1,000 for client A (2 % failed with a reason to explain, 0.5 % waiting, the rest
completed), none for client B, the others spread over the remaining 48 clients; and one LLM call
per run in the platform DB. It serves the portal with ``streamlit run`` and signs in A's and B's
users and an agency user, each in its own Chromium tab. Each round clicks, in turn: Catalog (A),
Runs (A: failures first, a page of the rest), the baseline Runs (B, no runs: the same page and
round trips without the data), Usage (A: this month's figures, counted from A's runs) and Costs
(agency: every client's usage of the month, counted from all runs). A sample is the time from
the sidebar click until the page's content is on screen and the script has finished. Prints
``metric=value`` lines (medians in seconds), the headline last.
"""

from __future__ import annotations

import argparse
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
        plan.append((client_a, "daily_digest" if i % 3 else "offers", state))
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


def _sign_in(page: Any, url: str, email: str, home: str = "Catalog") -> None:
    page.goto(url)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=home, level=1).wait_for()


def _timed(page: Any, title: str, content: str) -> float:
    """Seconds from the sidebar click on ``title`` to ``content`` shown and the run finished."""
    start = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for()
    page.locator(content).first.wait_for()
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden")
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
        print(f"seeded_runs={len(plan)}", flush=True)
        print(f"client_a_runs={sum(c == client_a for c, _, _ in plan)}", flush=True)
        print(f"clients={len(clients)}", flush=True)
        print(f"seed_s={time.perf_counter() - started:.1f}", flush=True)

        names = ("catalog", "runs", "runs_empty", "usage", "costs_agency")
        samples: dict[str, list[float]] = {name: [] for name in names}
        table = "[data-testid='stDataFrame']"
        with portal_process(settings, home / "portal.log") as url, sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                page_a, page_b, page_s = (
                    browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(3)
                )
                for page in (page_a, page_b, page_s):
                    page.set_default_timeout(60_000)
                _sign_in(page_a, url, f"user@{client_a}.test")
                _sign_in(page_b, url, f"user@{client_b}.test")
                _sign_in(page_s, url, staff, home="Clients")
                # warm-up: first renders import page modules and open API connections
                _timed(page_a, "Runs", "text=Needs your attention")
                _timed(page_b, "Runs", "text=No runs yet in these days.")
                _timed(page_a, "Usage", table)
                _timed(page_s, "Costs", "text=Usage for invoicing")
                for _ in range(rounds):
                    samples["catalog"].append(
                        _timed(page_a, "Catalog", "text=Prebuilt workflows your agency")
                    )
                    samples["runs"].append(_timed(page_a, "Runs", "text=Needs your attention"))
                    samples["runs_empty"].append(
                        _timed(page_b, "Runs", "text=No runs yet in these days.")
                    )
                    samples["usage"].append(_timed(page_a, "Usage", table))
                    samples["costs_agency"].append(
                        _timed(page_s, "Costs", "text=Usage for invoicing")
                    )
                    _timed(page_b, "Catalog", "text=Prebuilt workflows your agency")
                    _timed(page_s, "Clients", table)
            finally:
                browser.close()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"rounds={rounds}")
    for name, values in samples.items():
        print(f"{name}_median_s={medians[name]:.3f}")
        print(f"{name}_max_s={max(values):.3f}")
    print(f"runs_vs_empty_ratio={medians['runs'] / medians['runs_empty']:.2f}")
    slowest = max(medians[n] for n in ("catalog", "runs", "usage", "costs_agency"))
    print(f"goal_met={slowest < 1.0}")
    print(f"slowest_page_median_s={slowest:.3f}")


if __name__ == "__main__":
    main()
