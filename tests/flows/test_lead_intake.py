"""lead_intake end to end on the real Prefect server: local HTTP enrichment API, the
OpenAI-compatible endpoint (standing in for a real LLM, which cannot run here), a Slack
receiver (local HTTP server), a real PostgreSQL database and local file storage."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import psycopg
import pytest

from agency.settings import get_settings
from blocks import save_credential
from flows.lead_intake import LeadIntakeSettings, lead_intake
from tests.fixtures.http_server import HttpServer
from tests.fixtures.llm_server import LlmServer

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def lead_setup(
    http_server: HttpServer, llm_server: LlmServer, postgresql_database_url: str, client_slug: str
) -> tuple[LeadIntakeSettings, str]:
    db = urlparse(postgresql_database_url.replace("+psycopg", ""))
    conninfo = postgresql_database_url.replace("+psycopg", "")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE leads (email text, name text, company text, score int, reason text)"
        )
    save_credential(
        client_slug,
        "openai",
        "default",
        {"api_key": llm_server.api_key, "base_url": llm_server.base_url},
    )
    save_credential(client_slug, "slack_webhook", "default", {"url": http_server.url("/slack")})
    save_credential(
        client_slug,
        "postgres",
        "default",
        {
            "host": db.hostname,
            "port": db.port,
            "database": db.path.lstrip("/"),
            "username": db.username,
        },
    )
    http_server.handle("/people", lambda req: _person(req.query["email"][0]))
    http_server.respond("/slack", {"ok": True})
    return LeadIntakeSettings(enrich_url=http_server.url("/people")), conninfo


def _person(email: str):  # type: ignore[no-untyped-def]
    from tests.fixtures.http_server import Reply

    return Reply(json={"email": email, "title": "CTO", "employees": 800})


def test_hot_lead_goes_to_slack_and_postgres(
    lead_setup: tuple[LeadIntakeSettings, str],
    http_server: HttpServer,
    llm_server: LlmServer,
    client_slug: str,
) -> None:
    settings, conninfo = lead_setup
    llm_server.reply_next(json.dumps({"score": 91, "reason": "Large company, senior buyer."}))
    event = {"email": "ada@bigco.test", "name": "Ada", "company": "BigCo"}
    assert lead_intake(client_slug, settings, event) == {"score": 91, "branch": "hot"}

    assert http_server.requests_to("/people")[0].query == {"email": ["ada@bigco.test"]}
    assert "CTO" in llm_server.chat_requests()[-1].body["messages"][-1]["content"]
    [slack] = http_server.requests_to("/slack")
    assert slack.json()["text"] == "Hot lead: Ada (BigCo), score 91. Large company, senior buyer."
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT email, name, company, score FROM leads").fetchall()
    assert rows == [("ada@bigco.test", "Ada", "BigCo", 91)]


def test_cold_lead_is_filed(
    lead_setup: tuple[LeadIntakeSettings, str],
    http_server: HttpServer,
    llm_server: LlmServer,
    client_slug: str,
) -> None:
    settings, conninfo = lead_setup
    llm_server.reply_next(json.dumps({"score": 12, "reason": "Student address."}))
    result = lead_intake(client_slug, settings, {"email": "kid@school.test"})
    assert result == {"score": 12, "branch": "cold"}
    assert http_server.requests_to("/slack") == []
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM leads").fetchone() == (0,)
    files = list((get_settings().files_dir / client_slug).rglob("cold-lead.jsonl"))
    assert len(files) == 1
    assert json.loads(files[0].read_text()) == {
        "email": "kid@school.test",
        "name": None,
        "company": None,
        "score": 12,
        "reason": "Student address.",
    }


def test_bad_event_fails_before_any_call(
    lead_setup: tuple[LeadIntakeSettings, str], http_server: HttpServer, client_slug: str
) -> None:
    settings, _ = lead_setup
    state = lead_intake(client_slug, settings, {"name": "no email"}, return_state=True)
    assert state.is_failed() and "email" in str(state.message)
    assert http_server.requests_to("/people") == []


def test_a_batch_of_mixed_leads_routes_each_and_a_bad_one_fails_alone(
    lead_setup: tuple[LeadIntakeSettings, str],
    http_server: HttpServer,
    llm_server: LlmServer,
    client_slug: str,
) -> None:
    settings, conninfo = lead_setup
    llm_server.reply_next(json.dumps({"score": 95, "reason": "Hot one."}))
    llm_server.reply_next(json.dumps({"score": 10, "reason": "Cold one."}))
    llm_server.reply_next(json.dumps({"score": 80, "reason": "Hot two."}))
    events = [
        {"email": "ada@bigco.test", "name": "Ada"},
        {"email": "kid@school.test"},
        {"name": "no email"},  # fails alone, before any call
        {"email": "bob@midco.test", "name": "Bob"},
    ]
    result = lead_intake(client_slug, settings, events=events)
    assert result == {"events": 4, "hot": 2, "cold": 1, "failed": 1}
    assert [r.query["email"][0] for r in http_server.requests_to("/people")] == [
        "ada@bigco.test",
        "kid@school.test",
        "bob@midco.test",
    ]
    slack = [r.json()["text"] for r in http_server.requests_to("/slack")]
    assert [text.split(":")[1].split("(")[0].strip() for text in slack] == ["Ada", "Bob"]
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT email, score FROM leads ORDER BY score DESC").fetchall()
    assert rows == [("ada@bigco.test", 95), ("bob@midco.test", 80)]
    [cold] = list((get_settings().files_dir / client_slug).rglob("cold-lead.jsonl"))
    assert json.loads(cold.read_text())["email"] == "kid@school.test"
