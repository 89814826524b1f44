"""``newsletter_approval`` (human in the loop): draft a newsletter with an LLM from the client's
source, ask the client to approve it in the portal, then send it, record the rejection, or follow
the timeout policy."""

from __future__ import annotations

import json
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict, Field

from flows._common import EmailAddress, WebUrl
from flows.manifest import (
    EMAIL_CREDENTIAL_HELP,
    MAILBOX_KINDS,
    CredentialRequirement,
    WorkflowManifest,
)
from flows.outline import Outline, OutlineEdge, OutlineStep, chain
from nodes import HttpRequestInput, LlmInput, SendEmailInput, http_request, llm, send_email
from nodes._resume import resumable
from nodes.approve import ApproveInput, approve

MAX_SOURCE_CHARS = 12_000

# the approval suspends the run; resumed, it runs from the top and these return their persisted
# results (the same draft, no second fetch or LLM call) instead of running again
fetch_source, draft_text, ask_client, send = (
    resumable(http_request),
    resumable(llm),
    resumable(approve),
    resumable(send_email),
)


class NewsletterSettings(BaseModel):
    """What a client fills in to activate newsletter drafting."""

    model_config = ConfigDict(extra="forbid")

    source_url: WebUrl = Field(
        title="Source URL",
        description="Page or JSON API with this period's news.",
    )
    source_credential: str | None = Field(
        default=None, title="Source credential", description="http_auth credential for the source."
    )
    recipients: list[EmailAddress] = Field(
        min_length=1, title="Recipients", description="Who receives the approved newsletter."
    )
    subject: str = Field(default="Our latest news", title="Subject", description="Email subject.")
    tone: str = Field(
        default="friendly and concise", title="Tone", description="How the newsletter should sound."
    )
    approval_timeout_hours: float = Field(
        default=48,
        gt=0,
        le=168,
        title="Approval window",
        description="Hours to wait for your approval.",
    )
    on_timeout: Literal["approve", "reject", "cancel"] = Field(
        default="reject",
        title="If nobody answers",
        description="approve: send anyway; reject: do not send; cancel: stop the run.",
    )
    approval_poll_seconds: int = Field(
        default=10,
        ge=1,
        le=300,
        title="Check every",
        description="Seconds between checks for your answer.",
    )
    openai_credential: str = Field(
        default="default", title="LLM credential", description="Name of the openai credential."
    )
    smtp_credential: str = Field(
        default="default", title="Email credential", description=EMAIL_CREDENTIAL_HELP
    )


MANIFEST = WorkflowManifest(
    slug="newsletter_approval",
    title="Newsletter with approval",
    description="AI drafts your newsletter from your news page; you approve or reject it in the "
    "portal before anything is sent.",
    version="1.0.0",
    entrypoint="flows/newsletter_approval.py:newsletter_approval",
    settings_model=NewsletterSettings,
    credentials=(
        CredentialRequirement(
            kind="http_auth",
            setting="source_credential",
            optional=True,
            description="Authenticates to the source.",
        ),
        CredentialRequirement(
            kind="openai", setting="openai_credential", description="Drafts the newsletter."
        ),
        CredentialRequirement(
            kind="smtp",
            also=MAILBOX_KINDS,
            setting="smtp_credential",
            description="Sends the approved newsletter.",
        ),
    ),
    triggers=("cron", "manual"),
    default_cron="0 9 * * 1",
    agency_fields=("approval_poll_seconds",),
    outline=Outline(
        steps=(
            OutlineStep(id="fetch", title="Read your news page", task="http_request"),
            OutlineStep(id="draft", title="Draft the newsletter with AI", task="llm"),
            OutlineStep(id="approve", title="Wait for your approval", task="approve"),
            OutlineStep(id="send", title="Send the newsletter", task="send_email"),
        ),
        edges=(
            *chain("fetch", "draft", "approve"),
            OutlineEdge(source="approve", to="send", label="if approved"),
        ),
    ),
)


@flow(name="newsletter_approval", log_prints=True)
def newsletter_approval(client: str, settings: NewsletterSettings) -> dict[str, Any]:
    """Draft, ask for approval, then send or record; return the decision."""
    logger = get_run_logger()
    source = fetch_source(
        HttpRequestInput(
            client=client, url=settings.source_url, credential=settings.source_credential
        )
    )
    material = source.body if isinstance(source.body, str) else json.dumps(source.body, indent=1)
    draft = draft_text(
        LlmInput(
            client=client,
            credential=settings.openai_credential,
            system=f"You write email newsletters. Tone: {settings.tone}. Plain text, no preamble.",
            prompt="Write this period's newsletter from this material:\n"
            + material[:MAX_SOURCE_CHARS],
        )
    ).text
    answer = ask_client(
        ApproveInput(
            client=client,
            message=f"Send the newsletter '{settings.subject}' to "
            f"{len(settings.recipients)} recipient(s)?",
            data={"subject": settings.subject, "draft": draft, "recipients": settings.recipients},
            timeout_seconds=int(settings.approval_timeout_hours * 3600),
            on_timeout=settings.on_timeout,
            poll_interval_seconds=settings.approval_poll_seconds,
        )
    )
    outcome = {
        "decision": answer.decision,
        "approved": answer.approved,
        "comment": answer.comment,
        "reviewer": answer.reviewer,
        "sent": False,
    }
    if answer.approved:
        send(
            SendEmailInput(
                client=client,
                credential=settings.smtp_credential,
                to=settings.recipients,
                subject=settings.subject,
                text="{{ draft }}",
                context={"draft": draft},
            )
        )
        outcome["sent"] = True
        logger.info("Newsletter sent (%s)", answer.decision)
    else:
        create_markdown_artifact(
            key="newsletter-rejected",
            markdown=f"# Newsletter not sent\n\nDecision: {answer.decision}\n\n"
            f"Comment: {answer.comment or '-'}\n\n## Draft\n\n{draft}",
            description=f"Rejected newsletter for {client}",
        )
        logger.info("Newsletter not sent (%s): %s", answer.decision, answer.comment or "-")
    return outcome
