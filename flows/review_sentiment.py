"""``review_sentiment`` (map-reduce): LLM sentiment for every review in parallel (bounded), then
counts and an LLM insight summary as a markdown report: a Prefect artifact, a stored file and an
email."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, wait
from pydantic import BaseModel, ConfigDict, Field

from flows._common import EmailAddress, WebUrl
from flows.manifest import (
    EMAIL_CREDENTIAL_HELP,
    MAILBOX_KINDS,
    CredentialRequirement,
    WorkflowManifest,
)
from flows.outline import Outline, OutlineEdge, OutlineStep, chain
from nodes import (
    HttpRequestInput,
    LlmInput,
    LlmOutput,
    SendEmailInput,
    http_request,
    llm,
    send_email,
)
from nodes.aggregate import AggregateInput, aggregate
from nodes.scrape import ScrapeField, ScrapeInput, scrape
from nodes.store_file import StoreFileInput, store_file

SENTIMENTS = ("positive", "neutral", "negative")


class ReviewSentimentSettings(BaseModel):
    """What a client fills in to activate review sentiment."""

    model_config = ConfigDict(extra="forbid")

    reviews_url: WebUrl = Field(
        title="Reviews source",
        description="JSON API (a list of reviews, or an object with a `reviews` list) or, "
        "with a selector, a web page.",
    )
    review_selector: str | None = Field(
        default=None,
        title="Review selector (page)",
        description="CSS selector of each review on the page, e.g. `.review p`; empty: the "
        "source is a JSON API.",
    )
    review_field: str = Field(
        default="text",
        title="Review text field",
        description="Field holding the text when reviews are objects.",
    )
    source_credential: str | None = Field(
        default=None, title="Source credential", description="http_auth credential for the API."
    )
    max_reviews: int = Field(
        default=200, ge=1, le=1000, title="Max reviews", description="Reviews analysed per run."
    )
    concurrency: int = Field(
        default=4,
        ge=1,
        le=16,
        title="Parallel LLM calls",
        description="How many reviews are analysed at once.",
    )
    recipients: list[EmailAddress] = Field(
        min_length=1, title="Recipients", description="Who receives the report."
    )
    subject: str = Field(
        default="Review sentiment report", title="Subject", description="Email subject."
    )
    openai_credential: str = Field(
        default="default", title="LLM credential", description="Name of the openai credential."
    )
    smtp_credential: str = Field(
        default="default", title="Email credential", description=EMAIL_CREDENTIAL_HELP
    )
    storage_credential: str | None = Field(
        default=None,
        title="Storage credential",
        description="s3 credential; empty: platform storage.",
    )


MANIFEST = WorkflowManifest(
    slug="review_sentiment",
    title="Review sentiment",
    description="Read your latest reviews, classify each one's sentiment with AI, and get a "
    "report with the counts and the key insights by email.",
    version="1.0.0",
    entrypoint="flows/review_sentiment.py:review_sentiment",
    settings_model=ReviewSentimentSettings,
    credentials=(
        CredentialRequirement(
            kind="http_auth",
            setting="source_credential",
            optional=True,
            description="Authenticates to the reviews API.",
        ),
        CredentialRequirement(
            kind="openai",
            setting="openai_credential",
            description="Classifies and summarises reviews.",
        ),
        CredentialRequirement(
            kind="smtp",
            also=MAILBOX_KINDS,
            setting="smtp_credential",
            description="Sends the report.",
        ),
        CredentialRequirement(
            kind="s3",
            setting="storage_credential",
            optional=True,
            description="Keeps the report file.",
        ),
    ),
    triggers=("cron", "manual", "webhook"),
    default_cron="0 8 * * 1",
    agency_fields=("review_selector", "review_field", "max_reviews", "concurrency"),
    outline=Outline(
        steps=(
            OutlineStep(id="read_page", title="Read the reviews page", task="scrape"),
            OutlineStep(id="fetch", title="Fetch the reviews", task="http_request"),
            OutlineStep(id="classify", title="Classify each review with AI", task="sentiment"),
            OutlineStep(id="insights", title="Find the key insights", task="aggregate"),
            OutlineStep(id="store", title="Save the report", task="store_file"),
            OutlineStep(id="email", title="Email the report", task="send_email"),
        ),
        edges=(
            OutlineEdge(source="read_page", to="classify", label="web page"),
            OutlineEdge(source="fetch", to="classify", label="API"),
            *chain("classify", "insights", "store", "email"),
        ),
    ),
)


def _reviews(body: Any, field: str, limit: int) -> list[str]:
    items = body.get("reviews", []) if isinstance(body, dict) else body
    if not isinstance(items, list):
        return []
    texts = [str(i.get(field, "")) if isinstance(i, dict) else str(i) for i in items]
    return [t for t in texts if t.strip()][:limit]


def _classify(client: str, settings: ReviewSentimentSettings, reviews: list[str]) -> list[str]:
    """Sentiment per review, at most ``settings.concurrency`` LLM calls in flight."""
    labels: list[str] = ["neutral"] * len(reviews)
    in_flight: dict[PrefectFuture[LlmOutput], int] = {}
    pending = list(enumerate(reviews))
    while pending or in_flight:
        while pending and len(in_flight) < settings.concurrency:
            index, text = pending.pop(0)
            future = llm.with_options(task_run_name=f"sentiment[{index}]").submit(
                LlmInput(
                    client=client,
                    credential=settings.openai_credential,
                    output="json",
                    system='Classify the review. Answer in JSON: {"sentiment": '
                    '"positive"|"neutral"|"negative"}.',
                    prompt=text[:4000],
                )
            )
            in_flight[future] = index
        done = wait(list(in_flight), timeout=None).done
        for future in done:
            index = in_flight.pop(future)
            data = future.result().json_data
            label = str(data.get("sentiment", "")).lower() if isinstance(data, dict) else ""
            labels[index] = label if label in SENTIMENTS else "neutral"
    return labels


@flow(name="review_sentiment", log_prints=True)
def review_sentiment(
    client: str, settings: ReviewSentimentSettings, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Classify, count and summarise the reviews; return counts and the report's file key."""
    logger = get_run_logger()
    if settings.review_selector:
        field = ScrapeField(name="reviews", selector=settings.review_selector, all=True)
        page = scrape(ScrapeInput(client=client, url=settings.reviews_url, fields=[field]))
        body: Any = page.fields.get("reviews") or []
    else:
        body = http_request(
            HttpRequestInput(
                client=client, url=settings.reviews_url, credential=settings.source_credential
            )
        ).body
    reviews = _reviews(body, settings.review_field, settings.max_reviews)
    logger.info("Analysing %d reviews", len(reviews))
    labels = _classify(client, settings, reviews)
    counts = {s: Counter(labels).get(s, 0) for s in SENTIMENTS}
    insight = (
        aggregate(
            AggregateInput(
                client=client,
                items=reviews,
                operation="summarize",
                credential=settings.openai_credential,
                instructions="Give the three most important insights from these customer reviews.",
            )
        ).value
        if reviews
        else "No reviews to summarise."
    )
    total = max(len(reviews), 1)
    table = "\n".join(f"| {s} | {counts[s]} | {counts[s] * 100 / total:.0f}% |" for s in SENTIMENTS)
    report = (
        f"# {settings.subject}\n\n{len(reviews)} reviews analysed.\n\n"
        f"| sentiment | reviews | share |\n|---|---|---|\n{table}\n\n"
        f"## Insights\n\n{insight}\n"
    )
    create_markdown_artifact(
        key="review-sentiment", markdown=report, description=f"Review sentiment for {client}"
    )
    stored = store_file(
        StoreFileInput(
            client=client,
            name="review-sentiment.md",
            content=report,
            credential=settings.storage_credential,
        )
    )
    send_email(
        SendEmailInput(
            client=client,
            credential=settings.smtp_credential,
            to=settings.recipients,
            subject=settings.subject,
            text="{{ report }}",
            context={"report": report},
        )
    )
    return {"counts": counts, "reviews": len(reviews), "report_key": stored.key}
