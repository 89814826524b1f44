"""The gateway against hostile or broken senders, on SQLite and on PostgreSQL: a body cut off
mid-stream, JSON numbers that JSON does not have, and a delivery id longer than the outbox keeps.
Each is a clear 4xx, writes no delivery row and starts no run."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agency.db import upgrade
from agency.settings import Settings
from deployments import ensure_work_pool
from tests.fixtures.gateway import IDLE_POOL, RunningGateway, make_hook, serve
from tests.gateway.test_gateway import delivery_rows
from tests.gateway.test_verifiers import signed


@pytest.fixture
def any_db_gateway(
    tmp_path: Path, migrated_db_url: str, prefect_server: str, echo_workflows: None
) -> Iterator[tuple[RunningGateway, Settings]]:
    """A real gateway on the SQLite and on the PostgreSQL platform DB."""
    settings = Settings(home=tmp_path, work_pool=IDLE_POOL, database_url=migrated_db_url)
    upgrade(settings.platform_database_url)
    ensure_work_pool(IDLE_POOL)
    running = serve(settings)
    try:
        yield running, settings
    finally:
        running.stop()


def _post(gw: RunningGateway, hook: object, raw: bytes, msg_id: str = "m1") -> httpx.Response:
    headers = signed(hook.verifier, hook.secret, raw, msg_id=msg_id)  # type: ignore[attr-defined]
    headers["content-type"] = "application/json"
    with gw.client() as http:
        return http.post(hook.path, content=raw, headers=headers)  # type: ignore[attr-defined]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999999"])
def test_numbers_json_does_not_have_are_refused(
    any_db_gateway: tuple[RunningGateway, Settings], client_slug: str, number: str
) -> None:
    gw, settings = any_db_gateway
    hook = make_hook(settings, client_slug)
    answer = _post(gw, hook, f'{{"n": {number}}}'.encode())
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "payload_invalid"
    assert delivery_rows(settings) == 0
    assert _post(gw, hook, b'{"n": 1e300}').status_code == 202  # large but finite is fine


def test_a_delivery_id_over_255_characters_is_refused(
    any_db_gateway: tuple[RunningGateway, Settings], client_slug: str
) -> None:
    gw, settings = any_db_gateway
    hook = make_hook(settings, client_slug)
    body = json.dumps({"a": 1}).encode()
    answer = _post(gw, hook, body, msg_id="m" * 10_000)
    assert answer.status_code == 400
    assert answer.json()["error"] == "delivery_id_too_long"
    assert delivery_rows(settings) == 0
    assert _post(gw, hook, body, msg_id="m" * 255).status_code == 202
    assert delivery_rows(settings) == 1


def test_a_body_cut_off_mid_stream_is_one_log_line(
    any_db_gateway: tuple[RunningGateway, Settings],
    client_slug: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw, settings = any_db_gateway
    hook = make_hook(settings, client_slug)
    raw = json.dumps({"a": "x" * 5000}).encode()
    headers = signed(hook.verifier, hook.secret, raw, msg_id="cut")
    url = httpx.URL(gw.url)
    head = [f"POST {hook.path} HTTP/1.1", f"host: {url.host}:{url.port}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head += ["content-type: application/json", f"content-length: {len(raw)}", "", ""]
    with caplog.at_level("WARNING", logger="agency.gateway"):
        with socket.create_connection((url.host, url.port), timeout=10) as sock:
            sock.sendall("\r\n".join(head).encode() + raw[:1000])
        # the gateway notices the disconnect; a later request proves it is still well
        for _ in range(50):
            if any("disconnected" in r.getMessage() for r in caplog.records):
                break
            with gw.client() as http:
                http.get("/healthz")
    lines = [r for r in caplog.records if r.name == "agency.gateway"]
    assert len(lines) == 1
    assert re.fullmatch(
        f"POST {hook.path}: the sender disconnected after [0-9]+ bytes", lines[0].getMessage()
    )
    assert all(r.exc_info is None for r in caplog.records)  # no traceback anywhere
    assert delivery_rows(settings) == 0
