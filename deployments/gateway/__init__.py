"""The webhook gateway: ASGI app, verifiers, outbox with the hourly budget, metrics, client API."""

from deployments.gateway.app import MAX_BODY_BYTES, Gateway, create_app
from deployments.gateway.metrics import Metrics
from deployments.gateway.verifiers import (
    VERIFIERS,
    VerificationFailed,
    delivery_key,
    new_secret,
    verify,
)

__all__ = [
    "MAX_BODY_BYTES",
    "VERIFIERS",
    "Gateway",
    "Metrics",
    "VerificationFailed",
    "create_app",
    "delivery_key",
    "new_secret",
    "verify",
]
