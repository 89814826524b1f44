"""``event_archive`` (webhook, batches): keep the part of each incoming event you care about.

Two nodes: ``transform`` picks the wanted part of the event with a JMESPath expression, and
``store_file`` writes it as JSON under ``<client>/event_archive/<run>/<folder>/`` in the client's
S3 bucket or the platform's file storage. With a batch trigger one run receives ``events``: each
event is picked on its own (an event the expression finds nothing in fails alone, recorded
against its delivery) and the batch is written as one JSON Lines file.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agency.errors import PermanentNodeError
from flows.batch import each_event, record_outcomes
from flows.manifest import CredentialRequirement, WorkflowManifest
from flows.outline import Outline, OutlineStep, chain
from nodes._expr import check_query, query
from nodes.store_file import StoreFileInput, store_file
from nodes.transform import TransformInput, transform


class EventArchiveSettings(BaseModel):
    """What a client fills in to archive webhook events."""

    model_config = ConfigDict(extra="forbid")

    expression: str = Field(
        default="@",
        title="Keep",
        description="JMESPath expression picking what to keep of each event; `@` keeps all.",
    )
    folder: str = Field(
        default="events",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        title="Folder",
        description="Folder of the run's namespace the events go to.",
    )
    storage_credential: str | None = Field(
        default=None,
        title="Storage credential",
        description="Name of the s3 credential; empty: the platform's file storage.",
    )

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        return check_query(value)


MANIFEST = WorkflowManifest(
    slug="event_archive",
    title="Event archive",
    description="Keep what matters of every event your systems send (orders, sign-ups, "
    "payments) as JSON files in your storage; high-volume senders can be batched.",
    version="1.0.0",
    entrypoint="flows/event_archive.py:event_archive",
    settings_model=EventArchiveSettings,
    credentials=(
        CredentialRequirement(
            kind="s3",
            setting="storage_credential",
            optional=True,
            description="Stores the events in your bucket.",
        ),
    ),
    triggers=("webhook", "manual"),
    accepts_batches=True,
    agency_fields=("expression",),
    outline=Outline(
        steps=(
            OutlineStep(id="pick", title="Pick what matters", task="transform"),
            OutlineStep(id="store", title="Store it as a file", task="store_file"),
        ),
        edges=chain("pick", "store"),
    ),
)


def _found(value: Any, expression: str) -> Any:
    if value is None:
        raise PermanentNodeError(f"The expression '{expression}' found nothing in this event.")
    return value


@flow(name="event_archive")
def event_archive(
    client: str,
    settings: EventArchiveSettings,
    event: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Archive one ``event`` (two node runs) or a batch of ``events`` (one file per batch)."""
    if events is None:
        picked = transform(
            TransformInput(client=client, data=event or {}, expression=settings.expression)
        )
        value = _found(picked.value, settings.expression)
        stored = store_file(_file(client, settings, "event.json", json.dumps(value)))
        return {"events": 1, "failed": 0, "key": stored.key}

    def pick(one: dict[str, Any]) -> Any:
        return _found(query(settings.expression, one), settings.expression)

    results = each_event(events, pick)
    key = None
    if results.done:
        lines = "".join(json.dumps(v) + "\n" for v in results.done)
        try:
            key = store_file(_file(client, settings, "events.jsonl", lines)).key
        except Exception as exc:
            results.fail_done(f"Storing the batch failed: {type(exc).__name__}: {exc}"[:500])
            record_outcomes(results)
            raise
    record_outcomes(results)
    get_run_logger().info(
        "archived %d of %d events (%d failed)",
        len(events) - results.failed,
        len(events),
        results.failed,
    )
    return {"events": len(events), "failed": results.failed, "key": key}


def _file(client: str, settings: EventArchiveSettings, name: str, content: str) -> StoreFileInput:
    return StoreFileInput(
        client=client,
        name=f"{settings.folder}/{name}",
        content=content,
        credential=settings.storage_credential,
    )
