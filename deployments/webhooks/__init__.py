"""Webhook plumbing below the gateway face: verifiers, the outbox with its hourly budget, batches,
webhook secrets and the gateway's Prometheus metrics (shared with the dispatcher)."""

from deployments.webhooks.metrics import Metrics
from deployments.webhooks.verifiers import (
    VERIFIERS,
    VerificationFailed,
    delivery_key,
    new_secret,
    verify,
)

__all__ = [
    "VERIFIERS",
    "Metrics",
    "VerificationFailed",
    "delivery_key",
    "new_secret",
    "verify",
]
