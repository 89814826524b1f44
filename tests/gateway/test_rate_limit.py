"""The hourly budget is one budget per activation, whatever the number of gateway processes:
real ``agency gateway --no-dispatcher`` processes on one platform DB (two on PostgreSQL, one on
SQLite) take signed webhooks concurrently; exactly the budget is accepted, the rest get 429 with
``Retry-After`` and leave no row, a repeat of an accepted delivery still gets its first id, and a
restarted gateway still knows the budget is spent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from agency.db import WebhookDelivery, session_scope, upgrade
from agency.settings import Settings
from deployments import ensure_work_pool
from tests.fixtures.gateway import IDLE_POOL, ChildProcess, Hook, make_hook, start_gateway_process
from tests.gateway.test_verifiers import signed

LIMIT = 5


@pytest.fixture
def platform(
    tmp_path: Path, database_url: str, prefect_server: str, echo_workflows: None
) -> Settings:
    """Settings on a migrated platform DB of each backend; runs go to a pool no worker polls."""
    settings = Settings(home=tmp_path, database_url=database_url, work_pool=IDLE_POOL)
    upgrade(settings.platform_database_url)
    ensure_work_pool(IDLE_POOL)
    return settings


@pytest.fixture
def gateways(platform: Settings, tmp_path: Path) -> Iterator[list[tuple[ChildProcess, str]]]:
    """Two gateway processes on PostgreSQL (the replicated shape), one on SQLite."""
    count = 2 if platform.platform_database_url.startswith("postgresql") else 1
    started = [
        start_gateway_process(platform, tmp_path / f"gateway{i}.log", dispatcher=False)
        for i in range(count)
    ]
    try:
        yield started
    finally:
        for child, _ in started:
            child.stop()


async def send(urls: list[str], hook: Hook, msg_ids: list[str]) -> list[httpx.Response]:
    """Post one signed webhook per ``msg_ids``, all at once, alternating between ``urls``."""
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(i: int, msg_id: str) -> httpx.Response:
            body = json.dumps({"n": msg_id}).encode()
            headers = signed(hook.verifier, hook.secret, body, msg_id=msg_id)
            headers["content-type"] = "application/json"
            return await http.post(urls[i % len(urls)] + hook.path, content=body, headers=headers)

        return list(await asyncio.gather(*(one(i, m) for i, m in enumerate(msg_ids))))


def delivery_ids(settings: Settings) -> set[str]:
    with session_scope(settings.platform_database_url) as session:
        return set(session.scalars(select(WebhookDelivery.id)).all())


def test_gateway_processes_share_one_budget_that_survives_a_restart(
    platform: Settings,
    gateways: list[tuple[ChildProcess, str]],
    client_slug: str,
    tmp_path: Path,
) -> None:
    hook = make_hook(platform, client_slug, rate_limit=LIMIT)
    urls = [url for _, url in gateways]
    answers = asyncio.run(send(urls, hook, [f"msg_{i}" for i in range(8)]))

    accepted = [a for a in answers if a.status_code == 202]
    limited = [a for a in answers if a.status_code == 429]
    assert len(accepted) == LIMIT and len(limited) == 8 - LIMIT, [a.text for a in answers]
    for answer in limited:
        assert answer.json()["error"] == "rate_limited"
        assert 1 <= int(answer.headers["retry-after"]) <= 3600
    assert delivery_ids(platform) == {a.json()["delivery_id"] for a in accepted}

    # over budget, a repeat of an accepted delivery is still answered with the first id
    first = answers.index(accepted[0])
    [repeat] = asyncio.run(send(urls[::-1], hook, [f"msg_{first}"]))
    assert repeat.status_code == 200, repeat.text
    assert repeat.json() == {"delivery_id": accepted[0].json()["delivery_id"], "duplicate": True}

    for child, _ in gateways:
        child.stop()
    restarted, url = start_gateway_process(platform, tmp_path / "restarted.log", dispatcher=False)
    try:
        [sixth] = asyncio.run(send([url], hook, ["msg_after_restart"]))
    finally:
        restarted.stop()
    assert sixth.status_code == 429, sixth.text
    assert len(delivery_ids(platform)) == LIMIT
