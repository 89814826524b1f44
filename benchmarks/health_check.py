"""Health check time for 100 credentials: connected Google accounts on the loopback OAuth2 server.

    python -m benchmarks.health_check [--clients 10] [--per-client 10] [--workers 8] [--postgres]

Starts a throwaway Prefect server (the embedded secret store) and the test suite's real OAuth2
authorization server (:class:`tests.fixtures.oauth_server.OAuthServer`), connects
``clients x per-client`` accounts through the real connect flow (consent form driven with
httpx; not timed), then times :func:`services.health.check_credentials` twice: every account is
refreshed (forced, under its refresh lock) and shown to the identity endpoint, and its health
recorded. The platform DB is SQLite in the private home (refreshes serialize on its write lock),
or with ``--postgres`` a throwaway PostgreSQL database (row locks: refreshes run side by side).
Prints the total seconds, ms per credential, and the median and p95 of one credential's check.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import statistics
import time
from contextlib import ExitStack
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import make_url

from benchmarks._prefect import _postgres_database, prefect_server

_FORM = re.compile(r'<form id="consent" method="post" action="([^"]+)">')


def _connect(settings: object, server: object, client: str, name: str, email: str) -> None:
    from services.connections import begin_authorization, complete_connect, start_connect

    attempt = start_connect(settings, None, "google", name, client)  # type: ignore[arg-type]
    state = parse_qs(urlsplit(attempt.url).query)["state"][0]
    page = httpx.get(begin_authorization(settings, state, "bench"))  # type: ignore[arg-type]
    match = _FORM.search(page.text)
    assert match, page.text
    answer = httpx.post(
        server.url + html.unescape(match.group(1)),  # type: ignore[attr-defined]
        data={"email": email, "decision": "approve"},
    )
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    outcome = complete_connect(settings, state, "bench", code=code)  # type: ignore[arg-type]
    assert outcome.ok, outcome.message


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8, help="threads of the check")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL platform DB")
    args = parser.parse_args()

    with ExitStack() as stack:
        stack.enter_context(prefect_server())
        os.environ["AGENCY_EGRESS_ALLOW"] = "127.0.0.0/8"
        if args.postgres:
            url = make_url(stack.enter_context(_postgres_database()))
            platform = url.set(drivername="postgresql+psycopg")
            os.environ["AGENCY_DATABASE_URL"] = platform.render_as_string(hide_password=False)

        from agency.db import dispose_engines, upgrade
        from agency.settings import get_settings
        from services import add_client
        from services.connections import redirect_uri, register_app
        from services.health import check_credentials
        from tests.fixtures.oauth_server import OAuthServer

        stack.callback(dispose_engines)
        settings = get_settings()
        upgrade(settings.platform_database_url)
        server = OAuthServer()
        server.start()
        stack.callback(server.stop)
        view = register_app(
            settings,
            None,
            "google",
            "bench-app",
            "bench-app-secret",
            {
                "authorize_url": server.authorize_url,
                "token_url": server.token_url,
                "revoke_url": server.revoke_url,
                "userinfo_url": server.userinfo_url,
                "api_base_url": server.url,
            },
        )
        server.register_client(
            "bench-app", "bench-app-secret", [redirect_uri(settings)], view.scopes
        )
        start = time.perf_counter()
        for c in range(args.clients):
            add_client(settings, f"bench{c}", f"Bench {c}")
            for n in range(args.per_client):
                _connect(settings, server, f"bench{c}", f"acct{n}", f"u{c}x{n}@acme.test")
        total = args.clients * args.per_client
        print(f"connected {total} accounts in {time.perf_counter() - start:.1f}s (not timed)")
        db = "PostgreSQL" if args.postgres else "SQLite"
        for attempt in (1, 2):
            server.reset()
            report = check_credentials(settings, workers=args.workers)
            statuses = {r.status for r in report.results}
            assert len(report.results) == total and statuses == {"connected"}, statuses
            assert server.refresh_count == total, server.refresh_count
            each = sorted(r.seconds * 1000 for r in report.results)
            p95 = each[int(0.95 * (len(each) - 1))]
            print(
                f"check {attempt}: {total} credentials ({db} platform DB, {args.workers} threads) "
                f"in {report.seconds:.2f}s = {report.seconds * 1000 / total:.1f} ms/credential; "
                f"one check median {statistics.median(each):.0f} ms, p95 {p95:.0f} ms"
            )


if __name__ == "__main__":
    main()
