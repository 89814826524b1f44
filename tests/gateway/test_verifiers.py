"""Each verifier against requests signed exactly as the sender's public docs describe, including
the published test vectors (Standard Webhooks, GitHub, Slack), plus rotation and malformed input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from deployments.webhooks.verifiers import (
    VERIFIERS,
    VerificationFailed,
    check_secret,
    delivery_key,
    new_secret,
    standard_key,
    verify,
)

BODY = b'{"id": "evt_1", "event_id": "Ev1", "type": "ping"}'


def _hex(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def signed(
    verifier: str, secret: str, body: bytes = BODY, ts: int | None = None, msg_id: str = "msg_1"
) -> dict[str, str]:
    """Headers a real sender of ``verifier`` would send for ``body``."""
    ts = int(time.time()) if ts is None else ts
    if verifier == "standard":  # signed by the reference library, as our own senders do
        try:
            sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())
        except UnicodeDecodeError:  # the library signs text only; the scheme signs bytes
            mac = hmac.new(standard_key(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
            sig = "v1," + base64.b64encode(mac.digest()).decode()
        return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}
    if verifier == "github":
        return {"x-hub-signature-256": "sha256=" + _hex(secret, body), "x-github-delivery": "g1"}
    if verifier == "stripe":
        sig = _hex(secret, f"{ts}.".encode() + body)
        return {"stripe-signature": f"t={ts},v1={sig},v0=deadbeef"}
    if verifier == "slack":
        sig = _hex(secret, f"v0:{ts}:".encode() + body)
        return {"x-slack-request-timestamp": str(ts), "x-slack-signature": f"v0={sig}"}
    if verifier == "shopify":
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return {
            "x-shopify-hmac-sha256": base64.b64encode(digest).decode(),
            "x-shopify-webhook-id": "s1",
        }
    return {"authorization": f"Bearer {secret}", "idempotency-key": "k1"}


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_genuine_request_verifies(verifier: str) -> None:
    secret = new_secret(verifier)
    verify(verifier, [secret], signed(verifier, secret), BODY)


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_wrong_secret_or_tampered_body_fails(verifier: str) -> None:
    secret = new_secret(verifier)
    other = new_secret(verifier)
    with pytest.raises(VerificationFailed) as exc:
        verify(verifier, [other], signed(verifier, secret), BODY)
    assert exc.value.code == "signature_invalid"
    if verifier != "token":
        with pytest.raises(VerificationFailed):
            verify(verifier, [secret], signed(verifier, secret), BODY + b" ")


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_missing_headers_fail(verifier: str) -> None:
    with pytest.raises(VerificationFailed) as exc:
        verify(verifier, [new_secret(verifier)], {}, BODY)
    assert exc.value.code == "signature_invalid"


@pytest.mark.parametrize("verifier", ["standard", "stripe", "slack"])
def test_stale_timestamp_has_its_own_code(verifier: str) -> None:
    secret = new_secret(verifier)
    old = int(time.time()) - 301
    with pytest.raises(VerificationFailed) as exc:
        verify(verifier, [secret], signed(verifier, secret, ts=old), BODY)
    assert exc.value.code == "timestamp_out_of_range"
    verify(verifier, [secret], signed(verifier, secret, ts=old + 2), BODY)  # inside 5 minutes


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_previous_secret_verifies_during_grace(verifier: str) -> None:
    old, new = new_secret(verifier), new_secret(verifier)
    verify(verifier, [new, old], signed(verifier, old), BODY)
    verify(verifier, [new, old], signed(verifier, new), BODY)


def test_standard_webhooks_published_vector() -> None:
    # https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    verify("standard", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], headers, body, now=1614265330)


def test_standard_sender_may_send_several_signatures() -> None:
    old, new = new_secret("standard"), new_secret("standard")
    a, b = signed("standard", old), signed("standard", new)
    both = {**b, "webhook-signature": f"{a['webhook-signature']} {b['webhook-signature']}"}
    verify("standard", [new], both, BODY)


def test_github_published_vector() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    headers = {
        "x-hub-signature-256": "sha256="
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    }
    verify("github", ["It's a Secret to Everybody"], headers, b"Hello, World!")


def test_slack_published_vector() -> None:
    # https://api.slack.com/authentication/verifying-requests-from-slack
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F39"
        b"7700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a"
        b"14d10d2c447fce8b6703c"
    )
    headers = {
        "x-slack-request-timestamp": "1531420618",
        "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    }
    verify("slack", ["8f742231b10e8888abcd99yyyzzz85a5"], headers, body, now=1531420618)


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-id": "m", "webhook-timestamp": "now", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1AAAA"},
        {
            "webhook-id": "m",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,%%%",
        },
        {"webhook-id": "m\u00e9", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
    ],
)
def test_malformed_standard_headers_are_verification_failures(headers: dict[str, str]) -> None:
    with pytest.raises(VerificationFailed):
        verify("standard", [new_secret("standard")], headers, b"\xff\xfe not utf-8")


def test_delivery_keys_follow_the_design_table() -> None:
    payload = {"id": "evt_1", "event_id": "Ev1"}
    assert delivery_key("standard", {"webhook-id": "msg_1"}, payload) == "msg_1"
    assert delivery_key("github", {"x-github-delivery": "g1"}, payload) == "g1"
    assert delivery_key("stripe", {}, payload) == "evt_1"
    assert delivery_key("slack", {}, payload) == "Ev1"
    assert delivery_key("shopify", {"x-shopify-webhook-id": "s1"}, payload) == "s1"
    assert delivery_key("token", {"idempotency-key": "k1"}, payload) == "k1"
    assert delivery_key("token", {}, payload) is None


def test_check_secret() -> None:
    assert check_secret("github", "a-long-enough-secret") == "a-long-enough-secret"
    with pytest.raises(ValueError):
        check_secret("github", "short")
    with pytest.raises(ValueError):
        check_secret("standard", "whsec_!!!not-base64!!!!!")
    unpadded = new_secret("standard").rstrip("=")
    assert check_secret("standard", unpadded) == unpadded
