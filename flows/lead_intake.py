"""``lead_intake`` (webhook): enrich a lead over HTTP, score it with an LLM, route it.

Hot leads (score >= threshold) are announced in Slack and inserted into the client's
PostgreSQL; cold leads are written as one JSON line to the client's file storage. A batch
run (``events``, from an adaptive or batch webhook) handles each lead on its own.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows._common import WebUrl, table_field
from flows.batch import each_event, record_outcomes
from flows.manifest import CredentialRequirement, WorkflowManifest
from flows.outline import Outline, OutlineEdge, OutlineStep, chain
from nodes import HttpRequestInput, LlmInput, http_request, llm
from nodes.db_query import DbQueryInput, db_query
from nodes.notify import NotifyInput, notify
from nodes.route import RouteCase, RouteInput, route
from nodes.store_file import StoreFileInput, store_file


class LeadEvent(BaseModel):
    """The webhook payload: the lead."""

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="The lead's email.")
    name: str | None = Field(default=None, description="The lead's name.")
    company: str | None = Field(default=None, description="The lead's company.")


class LeadIntakeSettings(BaseModel):
    """What a client fills in to activate lead intake."""

    model_config = ConfigDict(extra="forbid")

    enrich_url: WebUrl = Field(
        title="Enrichment URL",
        description="HTTP API returning JSON about a person; called with ?email=<lead email>.",
    )
    enrich_credential: str | None = Field(
        default=None,
        title="Enrichment credential",
        description="Name of the http_auth credential for the enrichment API, if needed.",
    )
    hot_threshold: int = Field(
        default=80,
        ge=0,
        le=100,
        title="Hot threshold",
        description="Score (0-100) from which a lead is hot.",
    )
    scoring_instructions: str = Field(
        default="Score how likely this lead is to buy, 0-100, for a B2B software company.",
        title="Scoring instructions",
        description="What the LLM is asked when scoring.",
    )
    leads_table: str = table_field("leads", "PostgreSQL table that receives hot leads.")
    openai_credential: str = Field(
        default="default", title="LLM credential", description="Name of the openai credential."
    )
    slack_credential: str = Field(
        default="default",
        title="Slack credential",
        description="Name of the slack_webhook credential.",
    )
    postgres_credential: str = Field(
        default="default",
        title="Database credential",
        description="Name of the postgres credential.",
    )
    storage_credential: str | None = Field(
        default=None,
        title="Storage credential",
        description="Name of the s3 credential for cold leads; empty: the platform's storage.",
    )


MANIFEST = WorkflowManifest(
    slug="lead_intake",
    title="Lead intake",
    description="When your form or CRM sends a lead, enrich it, score it with AI, announce hot "
    "leads in Slack and save them to your database; keep cold ones on file.",
    version="1.0.0",
    entrypoint="flows/lead_intake.py:lead_intake",
    settings_model=LeadIntakeSettings,
    credentials=(
        CredentialRequirement(
            kind="http_auth",
            setting="enrich_credential",
            optional=True,
            description="Authenticates to the enrichment API.",
        ),
        CredentialRequirement(
            kind="openai", setting="openai_credential", description="Scores the lead."
        ),
        CredentialRequirement(
            kind="slack_webhook", setting="slack_credential", description="Announces hot leads."
        ),
        CredentialRequirement(
            kind="postgres", setting="postgres_credential", description="Stores hot leads."
        ),
        CredentialRequirement(
            kind="s3", setting="storage_credential", optional=True, description="Stores cold leads."
        ),
    ),
    triggers=("webhook", "manual"),
    event_model=LeadEvent,
    accepts_batches=True,
    agency_fields=("scoring_instructions", "leads_table"),
    outline=Outline(
        steps=(
            OutlineStep(id="enrich", title="Enrich the lead", task="http_request"),
            OutlineStep(id="score", title="Score it with AI", task="llm"),
            OutlineStep(id="route", title="Hot or cold?", task="route"),
            OutlineStep(id="announce", title="Announce it in Slack", task="notify"),
            OutlineStep(id="save", title="Save it to your database", task="db_query"),
            OutlineStep(id="keep", title="Keep it on file", task="store_file"),
        ),
        edges=(
            *chain("enrich", "score", "route"),
            OutlineEdge(source="route", to="announce", label="hot"),
            OutlineEdge(source="announce", to="save"),
            OutlineEdge(source="route", to="keep", label="cold"),
        ),
    ),
)


@flow(name="lead_intake", log_prints=True)
def lead_intake(
    client: str,
    settings: LeadIntakeSettings,
    event: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Process one lead (the webhook ``event``) and return its score and branch; or a batch of
    ``events``, each lead on its own (a bad one fails alone), and return the counts."""
    if events is None:
        return _one_lead(client, settings, event or {})
    results = each_event(events, lambda one: _one_lead(client, settings, one))
    record_outcomes(results)
    hot = sum(1 for value in results.done if value["branch"] == "hot")
    get_run_logger().info(
        "%d leads: %d hot, %d cold, %d failed",
        len(events),
        hot,
        len(results.done) - hot,
        results.failed,
    )
    return {
        "events": len(events),
        "hot": hot,
        "cold": len(results.done) - hot,
        "failed": results.failed,
    }


def _one_lead(client: str, settings: LeadIntakeSettings, event: dict[str, Any]) -> dict[str, Any]:
    """Enrich, score and route one lead; the score and the branch taken."""
    lead = LeadEvent.model_validate(event)
    logger = get_run_logger()
    enriched = http_request(
        HttpRequestInput(
            client=client,
            url=settings.enrich_url,
            query={"email": lead.email},
            credential=settings.enrich_credential,
        )
    )
    scored = llm(
        LlmInput(
            client=client,
            credential=settings.openai_credential,
            output="json",
            system='Answer in JSON: {"score": <0-100>, "reason": "<one sentence>"}.',
            prompt=f"{settings.scoring_instructions}\n\nLEAD: {lead.model_dump_json()}\n"
            f"ENRICHMENT: {json.dumps(enriched.body)[:6000]}",
        )
    )
    verdict = scored.json_data if isinstance(scored.json_data, dict) else {}
    score = int(verdict.get("score", 0))
    branch = route(
        RouteInput(
            client=client,
            data={"score": score},
            cases=[RouteCase(branch="hot", when=f"score >= {settings.hot_threshold}")],
            default="cold",
        )
    ).branch
    logger.info("Lead scored %s: %s", score, branch)
    record = {**lead.model_dump(), "score": score, "reason": verdict.get("reason")}
    if branch == "hot":
        notify(
            NotifyInput(
                client=client,
                credential=settings.slack_credential,
                text="Hot lead: {{ name or email }} ({{ company or 'unknown company' }}), "
                "score {{ score }}. {{ reason }}",
                context=record,
            )
        )
        db_query(
            DbQueryInput(
                client=client,
                credential=settings.postgres_credential,
                fetch="none",
                sql=f"INSERT INTO {settings.leads_table} (email, name, company, score, reason) "
                "VALUES (%(email)s, %(name)s, %(company)s, %(score)s, %(reason)s)",
                parameters=record,
            )
        )
    else:
        store_file(
            StoreFileInput(
                client=client,
                name="cold-lead.jsonl",
                content=json.dumps(record) + "\n",
                credential=settings.storage_credential,
            )
        )
    return {"score": score, "branch": branch}
