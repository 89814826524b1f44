"""Prometheus metrics of the gateway and its dispatcher (``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """One registry per app, so several gateways can live in one process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "agency_webhook_requests",
            "Webhook requests by outcome (accepted, duplicate, or the rejection) and verifier.",
            ["outcome", "verifier"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "agency_webhook_deliveries_pending",
            "Accepted deliveries not yet turned into a flow run.",
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "agency_webhook_dispatch_latency_seconds",
            "From accepting a delivery to its flow run being created.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.runs_created = Counter(
            "agency_webhook_flow_runs_created",
            "Flow runs created by the dispatcher.",
            registry=self.registry,
        )
        self.events_dispatched = Counter(
            "agency_webhook_events_dispatched",
            "Events handed to flow runs, by mode: single (a run of its own) or batch.",
            ["mode"],
            registry=self.registry,
        )
        self.dispatch_errors = Counter(
            "agency_webhook_dispatch_errors",
            "Failed attempts to create a flow run (retried with backoff).",
            registry=self.registry,
        )

    def track_pending(self, count: Callable[[], int]) -> None:
        """Read the pending gauge from ``count`` at each scrape."""
        self.pending.set_function(lambda: float(count()))
