"""How long offboarding a client takes when it has many runs.

    python -m benchmarks.offboard_cost [--runs N]

Against a throwaway Prefect server (SQLite) and a SQLite platform DB: a client with a
credential, an API key, a user and ``N`` finished flow runs tagged ``client:<slug>`` (made with
``POST /flow_runs/``, 20 at once), then :func:`services.lifecycle.offboard_client` is timed as a
whole: export (every run summarised), deletion of the runs (``POST /flow_runs/bulk_delete``, 50
per call), secrets and rows. Last line ``offboard_seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks._prefect import prefect_server


async def _make_runs(client: str, count: int) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    @flow(name="offboard-bench")
    def noop() -> None:
        """Never runs: its runs are created finished."""

    limit = asyncio.Semaphore(20)
    async with get_client() as api:

        async def one() -> None:
            async with limit:
                await api.create_flow_run(noop, tags=[f"client:{client}"], state=Completed())

        await asyncio.gather(*(one() for _ in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 runs")
    args = parser.parse_args()
    runs = 100 if args.quick else args.runs
    with prefect_server():
        from agency.db import upgrade
        from agency.settings import Settings
        from blocks import save_credential
        from services.api_keys import create_api_key
        from services.auth import create_user
        from services.clients import add_client
        from services.lifecycle import offboard_client

        settings = Settings()  # AGENCY_HOME in the server's private home
        home = settings.home
        upgrade(settings.platform_database_url)
        add_client(settings, "bench", "Bench")
        save_credential("bench", "openai", "default", {"api_key": "sk-bench"}, settings=settings)
        create_api_key(settings, "bench")
        create_user(settings, "boss@bench.test", "a-long-password-1", "client", "bench")
        started = time.monotonic()
        asyncio.run(_make_runs("bench", runs))
        print(f"runs={runs}")
        print(f"create_seconds={time.monotonic() - started:.1f}")
        done = offboard_client(settings, "bench", home / "export.json")
        print(f"deleted_runs={done.runs}")
        print(f"offboard_seconds={done.seconds:.2f}")


if __name__ == "__main__":
    main()
