"""The gateway over real HTTP against a real Prefect server: each verifier end to end, every
distinct rejection (with no delivery row and no run), dedupe, rate limit, secret rotation,
exactly one run per delivery with the event parameter and the `agency.webhook.received` event,
health, readiness and metrics."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter
from sqlalchemy import func, select

from agency.db import WebhookDelivery, session_scope
from agency.settings import Settings
from deployments.webhooks.verifiers import VERIFIERS
from services import pause
from services.webhooks import get_webhook, list_deliveries, rotate_webhook_secret
from tests.fixtures.gateway import RunningGateway, make_hook
from tests.gateway.test_verifiers import signed

EVENT = {"id": "evt_1", "event_id": "Ev1", "lead": {"email": "a@b.test"}}


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def post(
    gw: RunningGateway,
    hook: Any,
    payload: Any = EVENT,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    secret: str | None = None,
    msg_id: str = "msg_1",
) -> httpx.Response:
    raw = body_of(payload) if body is None else body
    sent = signed(hook.verifier, secret or hook.secret, raw, msg_id=msg_id)
    sent["content-type"] = "application/json"
    sent.update(headers or {})
    with gw.client() as http:
        return http.post(hook.path, content=raw, headers=sent)


def delivery_rows(settings: Settings) -> int:
    with session_scope(settings.platform_database_url) as session:
        return int(session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


def runs_of(client: str, workflow: str = "echo") -> list[Any]:
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment_by_name(f"{workflow}/{client}")
        return list(
            api.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}),
                limit=200,
            )
        )


def wait_dispatched(settings: Settings, client: str, count: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list_deliveries(settings, client, limit=1000)
        if len(found) >= count and all(d.status == "dispatched" for d in found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"deliveries not dispatched: {list_deliveries(settings, client)}")


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_each_verifier_accepts_and_dispatches_one_run(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str, verifier: str
) -> None:
    hook = make_hook(gateway_settings, client_slug, verifier=verifier)
    answer = post(gateway, hook)
    assert answer.status_code == 202, answer.text
    delivery_id = answer.json()["delivery_id"]

    [delivery] = wait_dispatched(gateway_settings, client_slug, 1)
    assert delivery.id == delivery_id
    [run] = runs_of(client_slug)
    assert str(run.id) == delivery.flow_run_id
    assert run.idempotency_key == delivery_id
    assert run.parameters["event"] == EVENT
    assert run.parameters["client"] == client_slug  # merged with the deployment's own
    assert f"client:{client_slug}" in run.tags


def test_rejections_have_distinct_answers_and_leave_no_trace(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug)
    strict = make_hook(gateway_settings, client_slug, "echo_strict")

    def check(answer: httpx.Response, status: int, code: str) -> None:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == code

    unknown_client = type(hook)(**{**hook.__dict__, "path": "/hooks/nobody/echo"})
    unknown_flow = type(hook)(**{**hook.__dict__, "path": f"/hooks/{client_slug}/nothing"})
    a, b = post(gateway, unknown_client), post(gateway, unknown_flow)
    check(a, 404, "not_found")
    assert a.json() == b.json()  # nothing tells which part was unknown

    check(post(gateway, hook, secret="whsec_" + "A" * 32), 401, "signature_invalid")
    check(post(gateway, hook, headers={"webhook-signature": "v1"}), 401, "signature_invalid")
    raw = body_of(EVENT)
    stale = signed("standard", hook.secret, raw, ts=int(time.time()) - 600)
    check(post(gateway, hook, body=raw, headers=stale), 401, "timestamp_out_of_range")
    check(post(gateway, hook, body=b"{" + b" " * (1024 * 1024) + b"}"), 413, "payload_too_large")
    check(post(gateway, hook, headers={"content-type": "text/plain"}), 415, "not_json")
    check(post(gateway, hook, body=b"{not json"), 415, "not_json")
    check(post(gateway, hook, body=b"\xff\xfe"), 415, "not_json")
    check(post(gateway, hook, [1, 2]), 422, "payload_invalid")
    check(post(gateway, strict, {"email": "nope"}), 422, "payload_invalid")

    assert delivery_rows(gateway_settings) == 0
    assert runs_of(client_slug) == [] and runs_of(client_slug, "echo_strict") == []

    pause(gateway_settings, client_slug, "echo")
    time.sleep(1.1)  # the gateway caches the activation for one second
    check(post(gateway, hook), 409, "inactive")
    assert delivery_rows(gateway_settings) == 0

    assert post(gateway, strict, {"email": "a@b.test"}).status_code == 202


def test_body_over_limit_is_refused_while_streaming(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    """No Content-Length (chunked upload): the gateway stops reading past 1 MiB."""
    hook = make_hook(gateway_settings, client_slug)
    sent = 0

    def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield b" " * 65536

    with gateway.client() as http:
        answer = http.post(
            hook.path, content=chunks(), headers={"content-type": "application/json"}
        )
    assert answer.status_code == 413
    assert delivery_rows(gateway_settings) == 0


def test_repeated_delivery_id_answers_200_with_the_first(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug, verifier="github")
    first = post(gateway, hook)
    again = post(gateway, hook, {"other": "payload"})  # same X-GitHub-Delivery
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["delivery_id"] == first.json()["delivery_id"]
    other = post(gateway, hook, headers={"x-github-delivery": "g2"})
    assert other.status_code == 202
    wait_dispatched(gateway_settings, client_slug, 2)
    assert delivery_rows(gateway_settings) == 2
    assert len(runs_of(client_slug)) == 2


def test_rate_limit_answers_429_with_retry_after(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug, verifier="token", rate_limit=3)
    answers = [post(gateway, hook, headers={"idempotency-key": f"k{i}"}) for i in range(5)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    assert 3000 < int(answers[3].headers["retry-after"]) <= 3600
    assert answers[3].json()["error"] == "rate_limited"
    # a repeat of an accepted delivery is still answered, not limited
    repeat = post(gateway, hook, headers={"idempotency-key": "k0"})
    assert repeat.status_code == 200
    assert delivery_rows(gateway_settings) == 3


def test_rotation_keeps_old_secret_valid_during_grace(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug)
    assert post(gateway, hook, msg_id="m1").status_code == 202
    rotated = rotate_webhook_secret(gateway_settings, client_slug, "echo")
    assert rotated.secret != hook.secret
    assert post(gateway, hook, msg_id="m2", secret=rotated.secret).status_code == 202
    assert post(gateway, hook, msg_id="m3").status_code == 202  # old, in grace
    view = get_webhook(gateway_settings, client_slug, "echo")
    assert view is not None and view.rotated_at is not None
    assert "secret" not in repr(view).lower().replace("secretview", "")


def test_rotation_after_grace_rejects_old_secret(
    gateway_settings: Settings, client_slug: str, echo_workflows: None
) -> None:
    from deployments.webhooks.secrets import valid_secrets

    hook = make_hook(gateway_settings, client_slug)
    no_grace = gateway_settings.model_copy(update={"webhook_rotation_grace_seconds": 0})
    rotated = rotate_webhook_secret(no_grace, client_slug, "echo")
    assert valid_secrets(no_grace, client_slug, "echo") == [rotated.secret]
    assert hook.secret not in valid_secrets(gateway_settings, client_slug, "echo")


def test_webhook_received_event_is_emitted(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug)
    assert post(gateway, hook).status_code == 202
    [delivery] = wait_dispatched(gateway_settings, client_slug, 1)
    deadline = time.monotonic() + 20
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not events:
        with get_client(sync_client=True) as api:
            answer = api._client.post(
                "/events/filter",
                json={
                    "filter": {
                        "event": {"name": ["agency.webhook.received"]},
                        "any_resource": {"id": [f"agency.webhook.delivery.{delivery.id}"]},
                    }
                },
            )
        events = answer.json()["events"]
        time.sleep(0.3)
    [event] = events
    related = {r["prefect.resource.id"]: r["prefect.resource.role"] for r in event["related"]}
    assert related[f"agency.client.{client_slug}"] == "client"
    assert related["agency.workflow.echo"] == "workflow"
    assert related[f"prefect.flow-run.{delivery.flow_run_id}"] == "flow-run"


def test_health_ready_and_metrics(
    gateway: RunningGateway, gateway_settings: Settings, client_slug: str
) -> None:
    hook = make_hook(gateway_settings, client_slug)
    post(gateway, hook)
    post(gateway, hook, secret="whsec_" + "A" * 32)
    wait_dispatched(gateway_settings, client_slug, 1)
    with gateway.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "prefect": "ok"}
        text = http.get("/metrics").text
    assert 'agency_webhook_requests_total{outcome="accepted",verifier="standard"} 1.0' in text
    assert (
        'agency_webhook_requests_total{outcome="signature_invalid",verifier="standard"} 1.0' in text
    )
    assert "agency_webhook_deliveries_pending 0.0" in text
    assert "agency_webhook_flow_runs_created_total 1.0" in text
    assert "agency_webhook_dispatch_latency_seconds_count 1.0" in text


def _count_secret_reads(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> list[str]:
    """Have the gateway's reads of the real secret store counted (the client of each read, in
    the returned list), each taking ``delay`` seconds more."""
    from gateway import intake as gateway_app

    reads: list[str] = []
    real = gateway_app.valid_secrets

    def counted(settings: Settings, client: str, workflow: str) -> list[str]:
        reads.append(client)
        time.sleep(delay)
        return real(settings, client, workflow)

    monkeypatch.setattr(gateway_app, "valid_secrets", counted)
    return reads


def test_a_burst_on_a_cold_gateway_reads_each_secret_once(
    gateway: RunningGateway,
    gateway_settings: Settings,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests that find a webhook's secret (or target) not cached yet share one read of the
    store: a burst of 50 used to send 50 reads, and every request waited for its own. The real
    store is read; the wrapper counts the reads and makes each take 0.2 s, so they overlap."""
    from deployments.webhooks.metrics import Metrics
    from gateway import intake as gateway_app

    make_hook(gateway_settings, client_slug)
    reads = _count_secret_reads(monkeypatch, delay=0.2)
    state = gateway_app.Gateway(gateway_settings, Metrics())

    async def burst() -> list[object]:
        secrets = [state.fresh_secrets(client_slug, "echo") for _ in range(50)]
        targets = [state.fresh_target(client_slug, "echo") for _ in range(50)]
        return await asyncio.gather(*secrets, *targets)

    answers = asyncio.run(burst())
    assert reads == [client_slug]
    assert all(a == answers[0] for a in answers[:50]) and answers[0]
    assert all(t is answers[50] for t in answers[50:]) and answers[50] is not None


def test_secret_rereads_after_bad_signatures_are_throttled(
    gateway: RunningGateway,
    gateway_settings: Settings,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first failed signature re-reads the secret store at once (a rotation must take effect
    immediately); a flood of them re-reads it at most every SECRET_REFRESH_MIN. The real store
    is read; the wrapper only counts the reads."""
    from deployments.webhooks.metrics import Metrics
    from gateway import intake as gateway_app

    make_hook(gateway_settings, client_slug)
    reads = _count_secret_reads(monkeypatch)
    # wider than the product's 0.2 s: a read of the real store can take longer on a busy machine
    monkeypatch.setattr(gateway_app, "SECRET_REFRESH_MIN", 3.0)
    state = gateway_app.Gateway(gateway_settings, Metrics())
    first = state.secrets(client_slug, "echo")
    assert state.secrets(client_slug, "echo", refresh=True) == first
    for _ in range(5):
        state.secrets(client_slug, "echo", refresh=True)
    assert len(reads) == 2
    time.sleep(gateway_app.SECRET_REFRESH_MIN + 0.05)
    state.secrets(client_slug, "echo", refresh=True)
    assert len(reads) == 3
