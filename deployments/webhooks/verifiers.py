"""Signature verifiers, one per sender convention (see the README, *Webhooks and the client API*).

Each verifier checks a raw request body and its headers against one or more secrets (two during
a rotation's grace period) and raises :class:`VerificationFailed` on anything malformed, so the
gateway answers 401 and never 500. Compares are constant-time.

| verifier   | headers                                                  | signed content        |
|------------|----------------------------------------------------------|-----------------------|
| `standard` | `webhook-id`, `webhook-timestamp`, `webhook-signature`   | `{id}.{ts}.{body}`    |
| `github`   | `X-Hub-Signature-256: sha256=<hex>`                      | body                  |
| `stripe`   | `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]`               | `{t}.{body}`          |
| `slack`    | `X-Slack-Signature: v0=<hex>`, `X-Slack-Request-Timestamp` | `v0:{ts}:{body}`    |
| `shopify`  | `X-Shopify-Hmac-Sha256: <b64>`                           | body                  |
| `token`    | `Authorization: Bearer <token>`                          | —                     |
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

TOLERANCE_SECONDS = 300
VERIFIERS: tuple[str, ...] = ("standard", "github", "stripe", "slack", "shopify", "token")

Headers = Mapping[str, str]


class VerificationFailed(Exception):
    """The request is not authentic; ``code`` goes into the 401 body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> VerificationFailed:
    return VerificationFailed("signature_invalid", message)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _header(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if not value:
        raise _bad(f"Missing header {name}.")
    return value


def _timestamp(raw: str, now: float) -> int:
    try:
        ts = int(raw)
    except ValueError:
        raise _bad("Malformed timestamp.") from None
    if abs(now - ts) > TOLERANCE_SECONDS:
        raise VerificationFailed(
            "timestamp_out_of_range", "Timestamp is more than 5 minutes from the server's clock."
        )
    return ts


def _any_equal(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    found = False
    for e in expected:
        for g in given:
            found |= hmac.compare_digest(e, g)
    return found


def _unhex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _unb64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``."""
    raw = secret.removeprefix("whsec_")
    # senders' libraries accept unpadded base64 too
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def _standard(secrets: Sequence[str], headers: Headers, body: bytes, now: float) -> None:
    msg_id = _header(headers, "webhook-id")
    raw_ts = _header(headers, "webhook-timestamp")
    given = []
    for entry in _header(headers, "webhook-signature").split():
        version, sep, sig = entry.partition(",")
        decoded = _unb64(sig) if sep and version == "v1" else None
        if decoded is not None:
            given.append(decoded)
    signed = f"{msg_id}.{raw_ts}.".encode() + body
    expected = [_hmac(standard_key(s), signed) for s in secrets]
    _timestamp(raw_ts, now)
    if not _any_equal(expected, given):
        raise _bad("No matching v1 signature.")


def _github(secrets: Sequence[str], headers: Headers, body: bytes, now: float) -> None:
    scheme, _, sig = _header(headers, "x-hub-signature-256").partition("=")
    given = _unhex(sig) if scheme == "sha256" else None
    expected = [_hmac(s.encode(), body) for s in secrets]
    if given is None or not _any_equal(expected, [given]):
        raise _bad("X-Hub-Signature-256 does not match.")


def _stripe(secrets: Sequence[str], headers: Headers, body: bytes, now: float) -> None:
    raw_ts, given = "", []
    for item in _header(headers, "stripe-signature").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            raw_ts = value
        elif key == "v1" and (decoded := _unhex(value)) is not None:
            given.append(decoded)
    if not raw_ts:
        raise _bad("Stripe-Signature has no timestamp.")
    expected = [_hmac(s.encode(), raw_ts.encode() + b"." + body) for s in secrets]
    _timestamp(raw_ts, now)
    if not _any_equal(expected, given):
        raise _bad("No matching v1 signature.")


def _slack(secrets: Sequence[str], headers: Headers, body: bytes, now: float) -> None:
    raw_ts = _header(headers, "x-slack-request-timestamp")
    scheme, _, sig = _header(headers, "x-slack-signature").partition("=")
    given = _unhex(sig) if scheme == "v0" else None
    expected = [_hmac(s.encode(), b"v0:" + raw_ts.encode() + b":" + body) for s in secrets]
    _timestamp(raw_ts, now)
    if given is None or not _any_equal(expected, [given]):
        raise _bad("X-Slack-Signature does not match.")


def _shopify(secrets: Sequence[str], headers: Headers, body: bytes, now: float) -> None:
    given = _unb64(_header(headers, "x-shopify-hmac-sha256"))
    expected = [_hmac(s.encode(), body) for s in secrets]
    if given is None or not _any_equal(expected, [given]):
        raise _bad("X-Shopify-Hmac-Sha256 does not match.")


def _token(secrets: Sequence[str], headers: Headers, body: bytes, now: float) -> None:
    scheme, _, token = _header(headers, "authorization").partition(" ")
    if scheme.lower() != "bearer" or not _any_equal(
        [s.encode() for s in secrets], [token.strip().encode()]
    ):
        raise _bad("Bearer token does not match.")


_CHECKS: dict[str, Callable[[Sequence[str], Headers, bytes, float], None]] = {
    "standard": _standard,
    "github": _github,
    "stripe": _stripe,
    "slack": _slack,
    "shopify": _shopify,
    "token": _token,
}


def verify(
    verifier: str,
    secrets: Sequence[str],
    headers: Headers,
    body: bytes,
    *,
    now: float | None = None,
) -> None:
    """Check ``body`` against ``secrets``; ``headers`` keys are lowercase.

    Raises ``VerificationFailed`` with code ``signature_invalid`` or ``timestamp_out_of_range``.
    """
    try:
        check = _CHECKS[verifier]
    except KeyError:
        raise ValueError(f"unknown verifier {verifier!r}") from None
    try:
        header_text = {k: v.encode("latin-1").decode("ascii") for k, v in headers.items()}
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise _bad("Non-ASCII header.") from None
    check(secrets, header_text, body, time.time() if now is None else now)


def delivery_key(verifier: str, headers: Headers, payload: Mapping[str, Any]) -> str | None:
    """The sender's delivery id used for dedupe, or ``None`` when the sender gives none."""
    if verifier == "standard":
        value: Any = headers.get("webhook-id")
    elif verifier == "github":
        value = headers.get("x-github-delivery")
    elif verifier == "stripe":
        value = payload.get("id")
    elif verifier == "slack":
        value = payload.get("event_id")
    elif verifier == "shopify":
        value = headers.get("x-shopify-webhook-id")
    else:
        value = headers.get("idempotency-key")
    if value is None or value == "":
        return None
    return str(value)


def new_secret(verifier: str) -> str:
    """A fresh random secret in the form the verifier's senders expect."""
    if verifier == "standard":
        return "whsec_" + base64.b64encode(_secrets.token_bytes(24)).decode()
    if verifier == "stripe":
        return "whsec_" + _secrets.token_hex(24)
    return _secrets.token_urlsafe(32)


def check_secret(verifier: str, secret: str) -> str:
    """Return ``secret`` if the verifier can use it, else raise ``ValueError``."""
    if len(secret) < 16:
        raise ValueError("a webhook secret must be at least 16 characters")
    if verifier == "standard":
        try:
            raw = secret.removeprefix("whsec_")
            if len(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)) < 16:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ValueError("a Standard Webhooks secret looks like whsec_<base64>") from None
    return secret
