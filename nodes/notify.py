"""The ``notify`` node: Slack (incoming webhook or bot token), or a generic webhook signed per
Standard Webhooks.

Slack (``slack_webhook`` credential): ``POST <webhook url>`` with ``{"text": ...}``; Slack answers
``200 ok``. Slack with a bot token (a connected ``slack/<name>`` credential and ``slack_channel``):
``POST /api/chat.postMessage`` with ``{"channel", "text"}``; Slack answers HTTP 200 with
``ok: false`` and an error code on failure: ``invalid_auth``, ``token_revoked``,
``account_inactive`` raise ``CredentialInvalid`` (reconnect it), ``channel_not_found`` and
``not_in_channel`` a plain ``PermanentNodeError``, ``ratelimited`` ``TransientNodeError``.

Webhook (``webhook_signing`` credential: ``url`` and ``secret`` ``whsec_<base64>``):
``POST <url>`` with the JSON body ``{"type", "timestamp", "data"}`` and the headers
``webhook-id: msg_<hex>``, ``webhook-timestamp: <unix seconds>`` and
``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``; any 2xx is
success. 408/425/429/5xx and connection errors raise ``TransientNodeError`` (retried with the same
``webhook-id``, so receivers can dedupe); any other 4xx raises ``PermanentNodeError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from prefect import get_run_logger
from prefect.runtime import task_run
from pydantic import Field, field_validator, model_validator

from agency.egress import guarded_client
from agency.errors import PermanentNodeError, TransientNodeError, status_to_error
from agency.redaction import redact
from blocks import SlackWebhookCredential
from blocks.kinds import WebhookSigningCredential
from nodes._base import (
    CredentialInput,
    NodeOutput,
    NodeSpec,
    credential_ref,
    node_task,
    resolve_credential,
)
from nodes._expr import check_template, render
from nodes._oauth import connected_account

KIND = "notify"
CREDENTIAL_KIND = "slack_webhook"
WEBHOOK_CREDENTIAL_KIND = "webhook_signing"
BOT_CREDENTIAL_KIND = "slack"
_SNIPPET = 200
#: Slack's ``ok: false`` error codes that mean the connection must be made again
_SLACK_REVOKED = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
}
_SLACK_NO_CHANNEL = {"channel_not_found", "not_in_channel", "is_archived"}


class NotifyInput(CredentialInput):
    """One notification."""

    credential: str = Field(
        title="Credential",
        description=(
            "Name of the client's slack_webhook (or webhook_signing) credential, or slack/<name> "
            "for a connected Slack bot (then set slack_channel); a reference, never a value."
        ),
    )
    channel: Literal["slack", "webhook"] = Field(
        default="slack",
        title="Channel",
        description=(
            "slack (slack_webhook credential or slack/<name> bot) or webhook "
            "(webhook_signing credential)."
        ),
    )
    slack_channel: str | None = Field(
        default=None,
        title="Slack channel",
        description="Channel a Slack bot posts to, e.g. #sales or C0123ABCD (bot tokens only).",
    )
    text: str = Field(title="Text", description="jinja2 template of the message.")
    context: dict[str, Any] = Field(
        default_factory=dict, title="Context", description="Values the template sees."
    )
    event_type: str = Field(
        default="agency.notification",
        title="Event type",
        description="`type` of the webhook event.",
    )
    data: dict[str, Any] = Field(
        default_factory=dict,
        title="Data",
        description="Extra fields of the webhook event's `data` (beside `text`).",
    )
    timeout_seconds: float = Field(
        default=15.0, gt=0, title="Timeout", description="Seconds for the request."
    )

    @field_validator("text")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)

    @model_validator(mode="after")
    def _slack_channel(self) -> NotifyInput:
        bot = self.channel == "slack" and self.uses_bot
        if bot and not self.slack_channel:
            raise ValueError("slack_channel is required to post with a Slack bot (slack/<name>)")
        if self.slack_channel and not bot:
            raise ValueError(
                "slack_channel works only with a Slack bot (credential slack/<name>); an "
                "incoming webhook posts to its own channel"
            )
        return self

    @property
    def uses_bot(self) -> bool:
        """True when ``credential`` names a connected Slack bot (``slack/<name>``)."""
        return credential_ref(self.credential, CREDENTIAL_KIND)[0] == BOT_CREDENTIAL_KIND


class NotifyOutput(NodeOutput):
    """What the receiver answered."""

    channel: str = Field(title="Channel", description="slack or webhook.")
    status: int = Field(title="Status", description="HTTP status of the answer.")
    message_id: str | None = Field(
        default=None,
        title="Message id",
        description="webhook-id sent (webhook channel), or the Slack message ts (Slack bot).",
    )
    text: str = Field(title="Text", description="The rendered message.")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` value for one message."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise PermanentNodeError(
            "The webhook_signing secret is not whsec_<base64>; rotate it."
        ) from None
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _post(where: str, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    try:
        with guarded_client(timeout=timeout) as http:
            response = http.post(url, content=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise TransientNodeError(f"{where} timed out after {timeout:g} s.") from exc
    except httpx.TransportError as exc:
        raise TransientNodeError(f"{where} failed: {type(exc).__name__}.") from exc
    if response.status_code >= 300:
        snippet = redact(response.text[:_SNIPPET])
        error = status_to_error(response.status_code)
        raise error(f"{where} answered {response.status_code}: {snippet}")
    return response.status_code


def _post_as_bot(params: NotifyInput, text: str) -> NotifyOutput:
    """``chat.postMessage`` with a connected Slack bot; Slack's ``ok: false`` mapped to errors."""
    bot = connected_account(params.client, params.credential, CREDENTIAL_KIND, ("slack",))
    channel = str(params.slack_channel)
    url = f"{bot.provider.api_url('slack')}/api/chat.postMessage"
    body = {"channel": channel, "text": text}
    response = bot.call("POST", url, "chat.postMessage", params.timeout_seconds, json=body)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise TransientNodeError(
            f"Slack answered chat.postMessage with no JSON ({response.status_code})."
        )
    if answer.get("ok") is not True:
        error = str(answer.get("error") or "unknown_error")
        if error in _SLACK_REVOKED:
            raise bot.refused(error)
        if error in _SLACK_NO_CHANNEL:
            raise PermanentNodeError(
                f"Slack cannot post to '{channel}' ({error}): check the channel name and "
                "invite the app to it (/invite @<app> in the channel)."
            )
        if error == "ratelimited":
            raise TransientNodeError("Slack is rate limiting chat.postMessage; will retry.")
        raise PermanentNodeError(f"Slack refused the message ({error}).")
    get_run_logger().info("Posted to Slack %s with bot '%s'", channel, bot.name)
    return NotifyOutput(
        channel="slack", status=response.status_code, message_id=answer.get("ts"), text=text
    )


def _message_id() -> str:
    # Stable across retries of one task run, so a receiver dedupes a retried delivery.
    run_id = task_run.id
    return f"msg_{uuid.UUID(run_id).hex if run_id else uuid.uuid4().hex}"


@node_task(KIND, timeout_seconds=120)
def notify(params: NotifyInput) -> NotifyOutput:
    """Post one message to Slack or to a signed webhook.

    Example::

        notify(NotifyInput(client="acme", credential="alerts", text="{{ n }} hot leads",
                           context={"n": 3}))
    """
    text = render(params.text, params.context, "text template")
    base = {"content-type": "application/json", "user-agent": "agency-platform/notify"}
    if params.channel == "slack" and params.uses_bot:
        return _post_as_bot(params, text)
    if params.channel == "slack":
        slack = resolve_credential(
            params.client, CREDENTIAL_KIND, params.credential, SlackWebhookCredential
        )
        # The Slack URL is itself the secret, so messages name only the credential.
        where = f"Slack webhook '{params.credential}'"
        body = json.dumps({"text": text}).encode()
        url = slack.url.get_secret_value()
        status = _post(where, url, body, base, params.timeout_seconds)
        get_run_logger().info("Posted to %s (%s)", where, status)
        return NotifyOutput(channel="slack", status=status, text=text)

    hook = resolve_credential(
        params.client, WEBHOOK_CREDENTIAL_KIND, params.credential, WebhookSigningCredential
    )
    message_id = _message_id()
    timestamp = int(time.time())
    event = {
        "type": params.event_type,
        "timestamp": datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z"),
        "data": {**params.data, "text": text},
    }
    body = json.dumps(event, separators=(",", ":"), default=str).encode()
    headers = {
        **base,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(hook.secret.get_secret_value(), message_id, timestamp, body),
    }
    where = f"POST {httpx.URL(hook.url).copy_with(query=None)}"
    status = _post(where, hook.url, body, headers, params.timeout_seconds)
    get_run_logger().info("Delivered %s via %s (%s)", message_id, where, status)
    return NotifyOutput(channel="webhook", status=status, message_id=message_id, text=text)


SPEC = NodeSpec(
    kind=KIND,
    title="Notify",
    description=(
        "Post a message to Slack, with an incoming webhook (slack_webhook credential) or a "
        "connected bot (slack/<name> and slack_channel), or to a generic webhook signed per "
        "Standard Webhooks (channel webhook, webhook_signing credential)."
    ),
    input_model=NotifyInput,
    output_model=NotifyOutput,
    credential_kind=CREDENTIAL_KIND,
    task=notify,
    example={
        "client": "acme",
        "credential": "alerts",
        "text": "{{ count }} hot leads today",
        "context": {"count": 3},
    },
)
