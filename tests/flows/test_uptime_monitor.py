"""uptime_monitor end to end on the real Prefect server: real HTTP targets (up, 503, refused),
a Slack receiver (local HTTP server) and a real PostgreSQL database."""

from __future__ import annotations

from urllib.parse import urlparse

import psycopg
import pytest

from blocks import save_credential
from flows.catalog import get_workflow
from flows.uptime_monitor import UptimeSettings, uptime_monitor
from tests.fixtures._net import free_port
from tests.fixtures.http_server import HttpServer

pytestmark = pytest.mark.usefixtures("prefect_server")


def _credentials(client: str, http_server: HttpServer, database_url: str) -> str:
    db = urlparse(database_url.replace("+psycopg", ""))
    save_credential(client, "slack_webhook", "default", {"url": http_server.url("/slack")})
    save_credential(
        client,
        "postgres",
        "default",
        {
            "host": db.hostname,
            "port": db.port,
            "database": db.path.lstrip("/"),
            "username": db.username,
        },
    )
    return database_url.replace("+psycopg", "")


def test_down_sites_alert_and_every_check_is_logged(
    http_server: HttpServer, postgresql_database_url: str, client_slug: str
) -> None:
    conninfo = _credentials(client_slug, http_server, postgresql_database_url)
    http_server.respond("/slack", {"ok": True})
    http_server.respond("/up", {"ok": True})
    http_server.respond("/broken", 503)
    refused = f"http://127.0.0.1:{free_port()}/"
    urls = [http_server.url("/up"), http_server.url("/broken"), refused]

    rows = uptime_monitor(client_slug, UptimeSettings(urls=urls, timeout_seconds=5))
    assert [(r["url"], r["ok"]) for r in rows] == [
        (urls[0], True),
        (urls[1], False),
        (refused, False),
    ]
    assert len(http_server.requests_to("/broken")) == 1  # one attempt, no retry storm
    [alert] = http_server.requests_to("/slack")
    text = alert.json()["text"]
    assert text.startswith("2 site(s) down:") and urls[1] in text and refused in text
    assert urls[0] not in text

    with psycopg.connect(conninfo) as conn:
        logged = conn.execute("SELECT url, status, ok FROM uptime_checks ORDER BY url").fetchall()
    assert sorted(logged) == sorted(
        [(urls[0], 200, True), (urls[1], None, False), (refused, None, False)]
    )

    # all up: no alert, rows still logged
    uptime_monitor(client_slug, UptimeSettings(urls=[urls[0]]))
    assert len(http_server.requests_to("/slack")) == 1
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM uptime_checks").fetchone() == (4,)


def test_manifest_defaults_to_every_five_minutes() -> None:
    manifest = get_workflow("uptime_monitor")
    assert manifest.default_cron == "*/5 * * * *" and "cron" in manifest.triggers
    with pytest.raises(Exception, match="Table: String should match pattern"):
        manifest.validate_settings({"urls": ["https://x.test"], "status_table": "x; DROP"})
