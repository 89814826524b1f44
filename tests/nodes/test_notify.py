"""``nodes/notify.py`` against the local HTTP receiver, which checks body and signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

import pytest
from standardwebhooks.webhooks import Webhook

from agency.errors import PermanentNodeError, TransientNodeError
from blocks import save_credential
from nodes import NotifyInput, NotifyOutput, notify
from tests.fixtures.http_server import HttpServer, ReceivedRequest, Reply
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

KEY = secrets.token_bytes(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@pytest.fixture
def client() -> str:
    return f"notify-{secrets.token_hex(3)}"


def _verify(request: ReceivedRequest) -> bool:
    """A receiver's check per Standard Webhooks, written independently of the node."""
    msg_id = request.headers["webhook-id"]
    ts = request.headers["webhook-timestamp"]
    signed = f"{msg_id}.{ts}.".encode() + request.body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    given = [s.partition(",")[2] for s in request.headers["webhook-signature"].split()]
    return abs(time.time() - int(ts)) < 300 and any(hmac.compare_digest(expected, g) for g in given)


def test_slack_message(client: str, http_server: HttpServer) -> None:
    http_server.respond("/services/T0/B0/x", Reply(200, text="ok"))
    save_credential(
        client, "slack_webhook", "alerts", {"url": http_server.url("/services/T0/B0/x")}
    )

    run = run_node(
        notify,
        NotifyInput(client=client, credential="alerts", text="{{ n }} hot leads", context={"n": 3}),
    )

    assert run.result == NotifyOutput(channel="slack", status=200, text="3 hot leads")
    (request,) = http_server.requests_to("/services/T0/B0/x")
    assert request.json() == {"text": "3 hot leads"}
    assert request.headers["content-type"] == "application/json"


def test_signed_webhook_verifies(client: str, http_server: HttpServer) -> None:
    http_server.handle("/hook", lambda r: Reply(204) if _verify(r) else Reply(401))
    save_credential(
        client, "webhook_signing", "crm", {"url": http_server.url("/hook"), "secret": SECRET}
    )

    run = run_node(
        notify,
        NotifyInput(
            client=client,
            credential="crm",
            channel="webhook",
            text="Lead {{ email }}",
            context={"email": "a@example.com"},
            event_type="lead.hot",
            data={"score": 91},
        ),
    )

    out = run.result
    assert isinstance(out, NotifyOutput), out
    assert out.status == 204 and out.message_id and out.message_id.startswith("msg_")
    (request,) = http_server.requests_to("/hook")
    assert request.headers["webhook-id"] == out.message_id
    body = request.json()
    assert body["type"] == "lead.hot"
    assert body["data"] == {"score": 91, "text": "Lead a@example.com"}
    assert body["timestamp"].endswith("Z")
    # and the reference implementation of Standard Webhooks accepts it too
    Webhook(SECRET).verify(request.body, request.headers)


def test_a_wrong_secret_is_rejected_by_the_receiver_and_not_retried(
    client: str, http_server: HttpServer
) -> None:
    http_server.handle("/hook", lambda r: Reply(204) if _verify(r) else Reply(401, text="bad sig"))
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    save_credential(
        client, "webhook_signing", "crm", {"url": http_server.url("/hook"), "secret": other}
    )

    run = run_node(
        notify, NotifyInput(client=client, credential="crm", channel="webhook", text="x")
    )

    assert isinstance(run.error, PermanentNodeError)
    assert "answered 401: bad sig" in str(run.error)
    assert run.attempts() == 1


def test_5xx_is_retried_with_the_same_webhook_id(client: str, http_server: HttpServer) -> None:
    http_server.respond("/hook", 503, 200)
    save_credential(
        client, "webhook_signing", "crm", {"url": http_server.url("/hook"), "secret": SECRET}
    )

    run = run_node(
        notify, NotifyInput(client=client, credential="crm", channel="webhook", text="x")
    )

    assert isinstance(run.result, NotifyOutput), run.result
    first, second = http_server.requests_to("/hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert run.attempts() == 2


def test_slack_404_fails_once_without_revealing_the_url(
    client: str, http_server: HttpServer
) -> None:
    http_server.respond("/services/T0/B0/secret-part", Reply(404, text="no_service"))
    save_credential(
        client, "slack_webhook", "alerts", {"url": http_server.url("/services/T0/B0/secret-part")}
    )

    run = run_node(notify, NotifyInput(client=client, credential="alerts", text="x"), retries=1)

    assert isinstance(run.error, PermanentNodeError)
    assert "no_service" in str(run.error) and "secret-part" not in str(run.error)
    assert run.attempts() == 1


def test_unreachable_receiver_is_transient(client: str) -> None:
    from tests.fixtures._net import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    save_credential(client, "webhook_signing", "crm", {"url": url, "secret": SECRET})

    run = run_node(
        notify, NotifyInput(client=client, credential="crm", channel="webhook", text="x"), retries=1
    )

    assert isinstance(run.error, TransientNodeError)
    assert run.attempts() == 2


def test_a_bad_template_fails_validation_naming_text() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        NotifyInput(client="acme", credential="alerts", text="{{ unclosed")

    assert info.value.errors()[0]["loc"] == ("text",)
    assert json.dumps(NotifyInput.model_json_schema())
