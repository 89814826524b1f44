"""``daily_digest``: fetch JSON from the client's API, summarise it with an LLM, email it.

Parameters are the client slug and its settings only; every credential is resolved inside the
node that needs it, so no secret appears in parameters, task inputs, results or logs.
"""

from __future__ import annotations

import json

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
from flows.outline import Outline, OutlineStep, chain
from nodes import HttpRequestInput, LlmInput, SendEmailInput, http_request, llm, send_email

MAX_SOURCE_CHARS = 12_000  # keeps the prompt well inside small models' context windows


class DailyDigestSettings(BaseModel):
    """What a client fills in to activate the daily digest."""

    model_config = ConfigDict(extra="forbid")

    source_url: WebUrl = Field(
        title="Source URL",
        description="HTTP(S) address of a JSON API to summarise daily.",
    )
    source_credential: str | None = Field(
        default=None,
        title="Source credential",
        description="Name of the http_auth credential for the API, if it needs one.",
    )
    recipients: list[EmailAddress] = Field(
        min_length=1, title="Recipients", description="Who receives the digest email."
    )
    subject: str = Field(
        default="Your daily digest", title="Subject", description="Email subject line."
    )
    instructions: str = Field(
        default="Summarise the following data as a short daily digest for a busy reader. "
        "Use plain sentences and mention the most important items first.",
        title="Instructions",
        description="What the LLM is asked to do with the data.",
    )
    model: str | None = Field(
        default=None, title="Model", description="LLM model; default: the credential's default."
    )
    openai_credential: str = Field(
        default="default", title="LLM credential", description="Name of the openai credential."
    )
    smtp_credential: str = Field(
        default="default", title="Email credential", description=EMAIL_CREDENTIAL_HELP
    )


MANIFEST = WorkflowManifest(
    slug="daily_digest",
    title="Daily digest",
    description="Every morning, fetch data from your API, summarise it with an LLM and email "
    "the summary to your team.",
    version="1.0.0",
    entrypoint="flows/daily_digest.py:daily_digest",
    settings_model=DailyDigestSettings,
    credentials=(
        CredentialRequirement(
            kind="http_auth",
            setting="source_credential",
            optional=True,
            description="Authenticates to your API, if it needs it.",
        ),
        CredentialRequirement(
            kind="openai", setting="openai_credential", description="Writes the summary."
        ),
        CredentialRequirement(
            kind="smtp",
            also=MAILBOX_KINDS,
            setting="smtp_credential",
            description="Sends the digest email.",
        ),
    ),
    triggers=("cron", "manual"),
    default_cron="0 7 * * *",
    agency_fields=("instructions", "model"),
    outline=Outline(
        steps=(
            OutlineStep(id="fetch", title="Fetch your data", task="http_request"),
            OutlineStep(id="summarise", title="Summarise it with AI", task="llm"),
            OutlineStep(id="email", title="Email the digest", task="send_email"),
        ),
        edges=chain("fetch", "summarise", "email"),
    ),
)

TEXT_TEMPLATE = "{{ summary }}\n\n--\nSent by your daily digest ({{ source }})."
HTML_TEMPLATE = (
    "<html><body><h2>{{ subject }}</h2>"
    "{% for para in summary.split('\\n') if para.strip() %}<p>{{ para }}</p>{% endfor %}"
    "<p style='color:#888'>Sent by your daily digest ({{ source }}).</p></body></html>"
)


@flow(name="daily_digest", log_prints=True)
def daily_digest(client: str, settings: DailyDigestSettings) -> str:
    """Run the digest for ``client``; return the summary that was emailed."""
    logger = get_run_logger()
    fetched = http_request(
        HttpRequestInput(
            client=client, url=settings.source_url, credential=settings.source_credential
        )
    )
    data = fetched.body if isinstance(fetched.body, str) else json.dumps(fetched.body, indent=1)
    logger.info("Fetched %d characters from the source", len(data))

    summary = llm(
        LlmInput(
            client=client,
            credential=settings.openai_credential,
            model=settings.model,
            prompt=f"{settings.instructions}\n\nDATA:\n{data[:MAX_SOURCE_CHARS]}",
        )
    )
    sent = send_email(
        SendEmailInput(
            client=client,
            credential=settings.smtp_credential,
            to=settings.recipients,
            subject=settings.subject,
            text=TEXT_TEMPLATE,
            html=HTML_TEMPLATE,
            context={
                "summary": summary.text,
                "subject": settings.subject,
                "source": settings.source_url,
            },
        )
    )
    create_markdown_artifact(
        key="daily-digest",
        markdown=f"# {settings.subject}\n\n{summary.text}\n\n_Sent to {len(sent.accepted)} "
        f"recipient(s) with {summary.usage.total_tokens} tokens ({summary.model})._",
        description=f"Daily digest for {client}",
    )
    return summary.text
