"""review_sentiment and newsletter_approval end to end on the real Prefect server with a local
reviews/news API, the OpenAI-compatible endpoint (standing in for a real LLM, which cannot run
here), aiosmtpd, local file storage and the approvals service answering as the client would."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from agency.db import upgrade
from agency.settings import Settings, get_settings
from blocks import save_credential
from flows.newsletter_approval import NewsletterSettings, newsletter_approval
from flows.review_sentiment import ReviewSentimentSettings, review_sentiment
from services import add_client, answer_approval, list_pending_approvals
from tests.fixtures.http_server import HttpServer
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.usefixtures("prefect_server")


def _credentials(client: str, llm_server: LlmServer, smtp_server: SmtpServer) -> None:
    save_credential(
        client,
        "openai",
        "default",
        {"api_key": llm_server.api_key, "base_url": llm_server.base_url},
    )
    save_credential(
        client,
        "smtp",
        "default",
        {
            "host": smtp_server.host,
            "port": smtp_server.port,
            "username": smtp_server.username,
            "password": smtp_server.password,
            "from_address": "news@agency.test",
            "security": "none",
        },
    )


def test_review_sentiment_report(
    http_server: HttpServer, llm_server: LlmServer, smtp_server: SmtpServer, client_slug: str
) -> None:
    _credentials(client_slug, llm_server, smtp_server)
    reviews = [
        {"text": t}
        for t in ("Love it", "Great support", "Broke in a week", "It is fine", "Superb value")
    ]
    http_server.respond("/reviews", {"reviews": reviews})
    for label in ("positive", "positive", "negative", "neutral", "positive"):
        llm_server.reply_next(json.dumps({"sentiment": label}))
    llm_server.reply_next("Customers love the value; durability needs work.")

    settings = ReviewSentimentSettings(
        reviews_url=http_server.url("/reviews"), recipients=["cx@shop.test"], concurrency=2
    )
    result = review_sentiment(client_slug, settings)
    assert result["counts"] == {"positive": 3, "neutral": 1, "negative": 1}
    # labels come back in arrival order, so assert the multiset via counts, and that every
    # review was sent to the model exactly once
    prompts = [r.body["messages"][-1]["content"] for r in llm_server.chat_requests()[:5]]
    assert sorted(prompts) == sorted(r["text"] for r in reviews)

    report = (get_settings().files_dir / result["report_key"]).read_text()
    assert "| positive | 3 | 60% |" in report and "durability needs work" in report
    [mail] = smtp_server.messages
    assert "| negative | 1 | 20% |" in mail.message.get_body(("plain",)).get_content()
    with get_client(sync_client=True) as api:
        artifacts = api.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["review-sentiment"]))
        )
    assert any("durability needs work" in (a.data or "") for a in artifacts)


@pytest.fixture
def portal_settings(tmp_path: Path, client_slug: str) -> Settings:
    settings = Settings(home=tmp_path)
    upgrade(settings.platform_database_url)
    add_client(settings, client_slug, "News Co")
    return settings


def _start(client: str, settings: NewsletterSettings) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        with tags(f"client:{client}", "workflow:newsletter_approval"):
            out.append(newsletter_approval(client, settings))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _pending(settings: Settings, client: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = list_pending_approvals(settings, client)
        if pending:
            return pending[0]
        time.sleep(0.5)
    raise AssertionError("no approval request appeared")


@pytest.mark.parametrize("approve", [True, False])
def test_newsletter_waits_for_the_client(
    approve: bool,
    portal_settings: Settings,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client_slug: str,
) -> None:
    _credentials(client_slug, llm_server, smtp_server)
    http_server.respond("/news", {"news": ["We opened a store in Lyon"]})
    llm_server.reply_next("Dear reader, we opened a store in Lyon!")
    settings = NewsletterSettings(
        source_url=http_server.url("/news"), recipients=["a@b.test"], approval_poll_seconds=1
    )
    thread, out = _start(client_slug, settings)
    request = _pending(portal_settings, client_slug)
    assert request.data["draft"] == "Dear reader, we opened a store in Lyon!"
    assert smtp_server.messages == []  # nothing is sent before the answer
    answer_approval(
        portal_settings,
        client_slug,
        request.flow_run_id,
        approved=approve,
        comment=None if approve else "Too short",
        actor="boss@newsco.test",
    )
    thread.join(60)
    [outcome] = out
    assert outcome["sent"] is approve
    if approve:
        [mail] = smtp_server.messages
        assert "store in Lyon" in mail.message.get_body(("plain",)).get_content()
    else:
        assert smtp_server.messages == [] and outcome["comment"] == "Too short"


def test_newsletter_timeout_policy(
    portal_settings: Settings,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client_slug: str,
) -> None:
    _credentials(client_slug, llm_server, smtp_server)
    http_server.respond("/news", {"news": ["Quiet month"]})
    llm_server.reply_next("A quiet month.")
    settings = NewsletterSettings(
        source_url=http_server.url("/news"),
        recipients=["a@b.test"],
        approval_timeout_hours=3 / 3600,
        on_timeout="approve",
        approval_poll_seconds=1,
    )
    thread, out = _start(client_slug, settings)
    thread.join(90)
    [outcome] = out
    assert outcome["decision"] == "timed_out" and outcome["sent"] is True
    assert len(smtp_server.messages) == 1


def test_review_sentiment_from_a_page(
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fixtures.http_server import Reply

    monkeypatch.setenv("AGENCY_EGRESS_ALLOW", "127.0.0.1")  # tests allow-list loopback
    get_settings.cache_clear()
    _credentials(client_slug, llm_server, smtp_server)
    page = (
        "<html><body><div class='review'><p>Fast delivery</p></div>"
        "<div class='review'><p>Rude staff</p></div></body></html>"
    )
    http_server.respond("/page", Reply(text=page, headers={"content-type": "text/html"}))
    llm_server.reply_next(json.dumps({"sentiment": "positive"}))
    llm_server.reply_next(json.dumps({"sentiment": "negative"}))
    llm_server.reply_next("Mixed.")
    settings = ReviewSentimentSettings(
        reviews_url=http_server.url("/page"),
        review_selector=".review p",
        recipients=["cx@shop.test"],
    )
    try:
        result = review_sentiment(client_slug, settings)
    finally:
        get_settings.cache_clear()
    assert result["reviews"] == 2
    assert result["counts"] == {"positive": 1, "neutral": 0, "negative": 1}
