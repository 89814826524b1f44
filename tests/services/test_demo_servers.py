"""The demo services (``services/demo/servers.py``) over real sockets: the mail catcher keeps
what real SMTP delivers for the portal's Demo inbox (agency only), the demo model speaks OpenAI's
protocol to the real ``openai`` client and labels every answer, the sample API answers JSON."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import openai
import pytest

from agency.errors import AccessDenied
from agency.settings import Settings
from services.demo import DemoLayout, read_inbox
from services.demo.servers import DEMO_LABEL, http_app, mail_catcher
from tests.fixtures._net import free_port
from tests.fixtures.http_server import ThreadedServer


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[DemoLayout]:
    settings = Settings(home=tmp_path / "home", demo_smtp_port=free_port())
    base = DemoLayout.of(settings)
    http = ThreadedServer(http_app(base.llm_key()))
    http.start()
    smtp = mail_catcher(base)
    smtp.start()
    try:
        yield DemoLayout(base.host, base.smtp_port, http.port, base.directory)
    finally:
        smtp.stop()
        http.stop()


def test_the_mail_catcher_keeps_each_message_for_the_inbox(layout: DemoLayout) -> None:
    for n in (1, 2):
        message = EmailMessage()
        message["From"], message["To"] = "reports@demo.test", "owner@demo.test"
        message["Subject"] = f"report {n}"
        message.set_content(f"body {n}")
        with smtplib.SMTP(layout.host, layout.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
    caught = read_inbox(layout.inbox)
    assert sorted(m.subject for m in caught) == ["report 1", "report 2"]
    assert {m.text.strip() for m in caught} == {"body 1", "body 2"}
    assert caught[0].recipients == "owner@demo.test"


def test_the_demo_model_labels_every_answer_and_needs_its_key(layout: DemoLayout) -> None:
    llm = openai.OpenAI(api_key=layout.llm_key(), base_url=layout.llm_base_url, max_retries=0)
    text = llm.chat.completions.create(
        model="demo-model",
        messages=[{"role": "user", "content": 'Summarise.\n\nDATA:\n{"orders": 3}'}],
    )
    answer = text.choices[0].message.content or ""
    assert answer.startswith(DEMO_LABEL) and '{"orders": 3}' in answer
    assert text.usage is not None and text.usage.prompt_tokens > 0
    as_json = llm.chat.completions.create(
        model="demo-model",
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "The cup was broken and delivery late."}],
    )
    data = json.loads(as_json.choices[0].message.content or "")
    assert data["demo"] is True and data["sentiment"] == "negative"
    stranger = openai.OpenAI(api_key="sk-wrong", base_url=layout.llm_base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_the_sample_api_answers_json(layout: DemoLayout) -> None:
    today = httpx.get(f"{layout.http_url}/api/today", timeout=10).json()
    assert today["orders"] and today["tickets"]
    reviews = httpx.get(f"{layout.http_url}/api/reviews", timeout=10).json()["reviews"]
    assert all({"author", "text", "stars"} <= set(r) for r in reviews)


def test_the_demo_inbox_is_for_agency_staff_only(tmp_path: Path) -> None:
    from agency.db import upgrade
    from services import add_client, authenticate, create_user
    from services.demo import demo_inbox

    settings = Settings(home=tmp_path / "home")
    upgrade(settings.platform_database_url)
    add_client(settings, "demo", "Demo")
    create_user(settings, "ops@agency.test", "long-enough-pw", "agency")
    create_user(settings, "owner@demo.test", "long-enough-pw", "client", "demo")
    assert demo_inbox(settings, authenticate(settings, "ops@agency.test", "long-enough-pw")) == []
    with pytest.raises(AccessDenied):
        demo_inbox(settings, authenticate(settings, "owner@demo.test", "long-enough-pw"))
