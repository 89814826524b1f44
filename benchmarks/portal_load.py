"""Portal load: time from click to rendered content for Catalog and Runs in headless Chromium,
with 1,000 runs of the signed-in client in Prefect (goal: < 1 s each).

Run ``python -m benchmarks.portal_load`` (``--quick``: 300 runs, 5 rounds). It starts its own
Prefect server and a platform DB with two clients, records the completed flow runs tagged for the
first (4 at a time: Prefect on SQLite answers 503 to more), serves the portal with ``streamlit
run`` and signs both clients' users in, each in its own Chromium tab. Each round clicks, in
turn: Catalog (client A), Runs (A, with its runs) and the baseline Runs (client B, no runs: the
same page and round trips without the data). A sample is the time from the sidebar click until
the page's content is on screen and the script has finished. Prints ``metric=value`` lines
(medians in seconds), the headline last.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._prefect import prefect_server

RUNS = 1000
PASSWORD = "benchmark password"


def _seed(client: str, runs: int) -> None:
    """Record ``runs`` completed flow runs tagged for ``client`` (``POST /flow_runs/``)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State, StateType
    from prefect.flows import Flow

    def body() -> None:
        """Stand-in flow: the benchmark records runs, it does not execute them."""

    flow = Flow(fn=body, name="daily_digest")
    tags = [f"client:{client}", "workflow:daily_digest", "trigger:cron"]

    async def seed() -> None:
        async with get_client() as api:
            gate = asyncio.Semaphore(4)

            async def one() -> None:
                async with gate:
                    await api.create_flow_run(
                        flow, tags=tags, state=State(type=StateType.COMPLETED)
                    )

            await asyncio.gather(*(one() for _ in range(runs)))

    asyncio.run(seed())


def _sign_in(page: Any, url: str, email: str) -> None:
    page.goto(url)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Catalog", level=1).wait_for()


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
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 1 minute)")
    args = parser.parse_args()
    rounds = 5 if args.quick else 20
    seeded = 300 if args.quick else RUNS

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
        client_a, client_b = f"bench-a-{tag}", f"bench-b-{tag}"
        for client in (client_a, client_b):
            add_client(settings, client, client)
            create_user(settings, f"user@{client}.test", PASSWORD, "client", client)
        started = time.perf_counter()
        _seed(client_a, seeded)
        print(f"seeded_runs={seeded}", flush=True)
        print(f"seed_s={time.perf_counter() - started:.1f}", flush=True)

        samples: dict[str, list[float]] = {"catalog": [], "runs": [], "runs_empty": []}
        with portal_process(settings, home / "portal.log") as url, sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                page_a = browser.new_page(viewport={"width": 1400, "height": 1000})
                page_b = browser.new_page(viewport={"width": 1400, "height": 1000})
                for page in (page_a, page_b):
                    page.set_default_timeout(60_000)
                _sign_in(page_a, url, f"user@{client_a}.test")
                _sign_in(page_b, url, f"user@{client_b}.test")
                # warm-up: first renders import page modules and open API connections
                _timed(page_a, "Runs", "[data-testid='stDataFrame']")
                _timed(page_b, "Runs", "text=No runs yet.")
                for _ in range(rounds):
                    samples["catalog"].append(
                        _timed(page_a, "Catalog", "text=Prebuilt workflows your agency")
                    )
                    samples["runs"].append(_timed(page_a, "Runs", "[data-testid='stDataFrame']"))
                    samples["runs_empty"].append(_timed(page_b, "Runs", "text=No runs yet."))
                    _timed(page_b, "Catalog", "text=Prebuilt workflows your agency")
            finally:
                browser.close()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"rounds={rounds}")
    for name, values in samples.items():
        print(f"{name}_median_s={medians[name]:.3f}")
        print(f"{name}_max_s={max(values):.3f}")
    print(f"runs_vs_empty_ratio={medians['runs'] / medians['runs_empty']:.2f}")
    print(f"goal_met={max(medians['catalog'], medians['runs']) < 1.0}")
    print(f"slowest_page_median_s={max(medians['catalog'], medians['runs']):.3f}")


if __name__ == "__main__":
    main()
