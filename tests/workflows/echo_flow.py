"""``echo``: a test-only flow started by webhooks; returns what it was given."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from flows.manifest import WorkflowManifest


class EchoSettings(BaseModel):
    """Nothing to fill in."""

    note: str = Field(default="", description="Free text, unused.")


class LeadEvent(BaseModel):
    """The declared input model of ``echo_strict``."""

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


class EventManifest(WorkflowManifest):
    """A manifest with a declared webhook input model (what the gateway validates against)."""

    event_model: type[BaseModel] | None = None


@flow(name="echo")
def echo(
    client: str, settings: dict[str, Any] | None = None, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return the client, settings and event it was started with."""
    return {"client": client, "settings": settings or {}, "event": event}


@flow(name="echo_strict")
def echo_strict(
    client: str, settings: dict[str, Any] | None = None, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Like ``echo``; deployments are named after the flow, so each workflow needs its own."""
    return {"client": client, "settings": settings or {}, "event": event}


@flow(name="echo_batch")
def echo_batch(
    client: str,
    settings: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return the events of its batch (or its single event)."""
    return {"client": client, "events": events if events is not None else [event]}


ENTRYPOINT = "tests/workflows/echo_flow.py:echo"

ECHO = EventManifest(
    slug="echo",
    title="Echo",
    description="Test-only: returns its webhook event.",
    version="1.0.0",
    entrypoint=ENTRYPOINT,
    settings_model=EchoSettings,
    triggers=("webhook", "manual"),
)
ECHO_STRICT = EventManifest(
    slug="echo_strict",
    title="Echo (strict)",
    description="Test-only: accepts only events with an email.",
    version="1.0.0",
    entrypoint="tests/workflows/echo_flow.py:echo_strict",
    settings_model=EchoSettings,
    triggers=("webhook",),
    event_model=LeadEvent,
)
ECHO_BATCH = EventManifest(
    slug="echo_batch",
    title="Echo (batches)",
    description="Test-only: accepts batches of events.",
    version="1.0.0",
    entrypoint="tests/workflows/echo_flow.py:echo_batch",
    settings_model=EchoSettings,
    triggers=("webhook", "manual"),
    accepts_batches=True,
)
