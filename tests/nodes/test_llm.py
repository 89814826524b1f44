"""``nodes/llm.py`` with the real ``openai`` client against the local OpenAI-compatible server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from prefect import tags
from pydantic import ValidationError
from sqlalchemy import select

from agency.db import LlmUsage, session_scope, upgrade
from agency.errors import CredentialMissing, PermanentNodeError, TransientNodeError
from agency.settings import get_settings
from blocks import save_credential
from nodes import LlmInput, LlmOutput, TokenUsage, llm
from nodes.llm import cost_usd, retry_after_seconds
from tests.fixtures.llm_server import LlmServer, count_tokens
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

CLIENT = "llm-node-tests"
PROMPT = "Our quarterly revenue grew by twelve percent while costs stayed flat overall."


@pytest.fixture(scope="module")
def platform_db() -> Iterator[str]:
    """The platform DB the node records usage into, migrated to head."""
    url = get_settings().platform_database_url
    upgrade(url)
    yield url


@pytest.fixture
def credential(llm_server: LlmServer, platform_db: str) -> str:
    save_credential(
        CLIENT,
        "openai",
        "local",
        {"api_key": llm_server.api_key, "base_url": llm_server.base_url, "default_model": "gpt-4o"},
    )
    return "local"


def test_text_reply_with_usage_and_default_model(llm_server: LlmServer, credential: str) -> None:
    run = run_node(
        llm,
        LlmInput(client=CLIENT, credential=credential, prompt=PROMPT, system="Be brief."),
    )

    out = run.result
    assert isinstance(out, LlmOutput), out
    assert out.text == "SUMMARY: Our quarterly revenue grew by twelve percent while"
    assert out.json_data is None and out.model == "gpt-4o" and out.finish_reason == "stop"
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens == 10
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    (request,) = llm_server.chat_requests()
    assert request.headers["authorization"] == f"Bearer {llm_server.api_key}"
    assert request.body["model"] == "gpt-4o"
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPT},
    ]
    assert "response_format" not in request.body


def test_json_mode_parses_the_reply(llm_server: LlmServer, credential: str) -> None:
    run = run_node(
        llm,
        LlmInput(
            client=CLIENT,
            credential=credential,
            prompt=PROMPT,
            model="gpt-4o-mini",
            output="json",
            temperature=0,
            max_tokens=200,
        ),
    )

    out = run.result
    assert isinstance(out, LlmOutput), out
    assert out.json_data == {
        "summary": "Our quarterly revenue grew by twelve percent while",
        "word_count": 12,
        "model": "gpt-4o-mini",
    }
    assert out.model_dump()["json"] == out.json_data
    (request,) = llm_server.chat_requests()
    assert request.body["response_format"] == {"type": "json_object"}
    assert (request.body["temperature"], request.body["max_tokens"]) == (0, 200)
    assert "JSON" in request.body["messages"][0]["content"]  # OpenAI requires the mention


def test_max_tokens_truncates(llm_server: LlmServer, credential: str) -> None:
    run = run_node(llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT, max_tokens=3))

    assert isinstance(run.result, LlmOutput)
    assert run.result.finish_reason == "length"
    assert run.result.usage.completion_tokens == 3


def test_usage_is_recorded_in_the_platform_db(
    llm_server: LlmServer, credential: str, platform_db: str
) -> None:
    run = run_node(llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT))

    assert isinstance(run.result, LlmOutput)
    with session_scope(platform_db) as session:
        rows = session.scalars(
            select(LlmUsage).where(LlmUsage.flow_run_id == run.flow_run_id)
        ).all()
        recorded = [
            (r.client, r.workflow, r.model, r.prompt_tokens, r.completion_tokens, r.total_tokens)
            for r in rows
        ]
    usage = run.result.usage
    assert recorded == [
        (
            CLIENT,
            run.flow_name,
            "gpt-4o",
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
        )
    ]


def test_429_then_success(llm_server: LlmServer, credential: str) -> None:
    llm_server.fail_next(429)

    run = run_node(llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT))

    assert isinstance(run.result, LlmOutput), run.result
    assert len(llm_server.chat_requests()) == 2  # the client itself never retries
    assert run.attempts() == 2


def test_5xx_is_transient(llm_server: LlmServer, credential: str) -> None:
    llm_server.fail_next(500, times=2)

    run = run_node(llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT), retries=1)

    assert isinstance(run.error, TransientNodeError)
    assert "answered 500" in str(run.error)
    assert len(llm_server.chat_requests()) == 2


def test_invalid_json_reply_gets_one_repair_request(llm_server: LlmServer, credential: str) -> None:
    llm_server.reply_next('{"score": 80,')
    llm_server.reply_next('{"score": 80}')

    run = run_node(
        llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT, output="json")
    )

    out = run.result
    assert isinstance(out, LlmOutput), out
    assert out.json_data == {"score": 80} and out.repaired
    first, repair = llm_server.chat_requests()
    assert repair.body["messages"][:-2] == first.body["messages"]
    assert repair.body["messages"][-2] == {"role": "assistant", "content": '{"score": 80,'}
    assert "not valid JSON" in repair.body["messages"][-1]["content"]
    assert run.attempts() == 1
    assert out.usage.total_tokens > 0 and out.usage.completion_tokens == count_tokens(
        '{"score": 80,{"score": 80}'
    )


def test_invalid_json_twice_fails_once_with_a_clear_error(
    llm_server: LlmServer, credential: str
) -> None:
    llm_server.reply_next('{"score": 80,', times=2)

    run = run_node(
        llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT, output="json")
    )

    assert isinstance(run.error, PermanentNodeError)
    message = str(run.error)
    assert "not valid JSON even after one repair request" in message
    assert "Expecting" in message and '{"score": 80,' in message
    assert len(llm_server.chat_requests()) == 2
    assert run.attempts() == 1


def test_a_json_schema_mismatch_is_repaired(llm_server: LlmServer, credential: str) -> None:
    llm_server.reply_next('{"score": "high"}')
    llm_server.reply_next('{"score": 90}')
    schema = {
        "type": "object",
        "properties": {"score": {"type": "integer"}},
        "required": ["score"],
    }

    run = run_node(
        llm,
        LlmInput(
            client=CLIENT, credential=credential, prompt=PROMPT, output="json", json_schema=schema
        ),
    )

    assert isinstance(run.result, LlmOutput), run.result
    assert run.result.json_data == {"score": 90}
    repair = llm_server.chat_requests()[1]
    assert (
        "schema mismatch at score: 'high' is not of type 'integer'"
        in repair.body["messages"][-1]["content"]
    )


def test_a_bad_json_schema_fails_validation() -> None:
    with pytest.raises(ValidationError) as info:
        LlmInput(client=CLIENT, credential="x", prompt="p", json_schema={"type": "nope"})
    assert info.value.errors()[0]["loc"] == ("json_schema",)


def test_429_waits_for_retry_after_before_the_retry(llm_server: LlmServer, credential: str) -> None:
    llm_server.fail_next(429)  # answers Retry-After: 1
    started = time.monotonic()

    run = run_node(llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT))

    assert isinstance(run.result, LlmOutput), run.result
    assert time.monotonic() - started >= 1.0  # the run_node harness itself adds no delay
    assert run.attempts() == 2


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers)) == seconds


def test_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = retry_after_seconds(httpx.Headers({"retry-after": when}))
    assert wait is not None and 25 < wait <= 30


def test_cost_uses_the_price_table_with_prefix_match(
    llm_server: LlmServer, credential: str, platform_db: str
) -> None:
    run = run_node(llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT))

    out = run.result
    assert isinstance(out, LlmOutput), out
    expected = (out.usage.prompt_tokens * 2.50 + out.usage.completion_tokens * 10.00) / 1e6
    assert out.cost_usd == pytest.approx(expected)
    with session_scope(platform_db) as session:
        (row,) = session.scalars(
            select(LlmUsage).where(LlmUsage.flow_run_id == run.flow_run_id)
        ).all()
        assert row.cost_usd == pytest.approx(expected)
    prices = {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)}
    usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=1_000_000, total_tokens=2_000_000)
    assert cost_usd("gpt-4o-mini-2024-07-18", usage, prices) == pytest.approx(0.75)
    assert cost_usd("local-echo", usage, prices) is None


def test_wrong_api_key_fails_once_without_revealing_it(llm_server: LlmServer) -> None:
    save_credential(
        CLIENT,
        "openai",
        "wrong-key",
        {"api_key": "sk-wrong-key-123456", "base_url": llm_server.base_url},
    )

    run = run_node(llm, LlmInput(client=CLIENT, credential="wrong-key", prompt=PROMPT))

    assert isinstance(run.error, PermanentNodeError)
    assert "answered 401" in str(run.error)
    assert "sk-wrong-key-123456" not in str(run.error)
    assert len(llm_server.chat_requests()) == 1
    assert run.attempts() == 1


def test_unknown_model_fails_once(llm_server: LlmServer, credential: str) -> None:
    run = run_node(
        llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT, model="gpt-9")
    )

    assert isinstance(run.error, PermanentNodeError)
    assert "answered 404" in str(run.error) and "gpt-9" in str(run.error)
    assert run.attempts() == 1


def test_missing_credential_fails_once_naming_client_kind_and_name(
    llm_server: LlmServer,
) -> None:
    run = run_node(llm, LlmInput(client=CLIENT, credential="absent", prompt=PROMPT))

    assert isinstance(run.error, CredentialMissing)
    message = str(run.error)
    assert f"'{CLIENT}'" in message and "'openai'" in message and "'absent'" in message
    assert llm_server.chat_requests() == []
    assert run.attempts() == 1


def test_usage_is_recorded_under_the_workflow_tag_of_client_deployments(
    llm_server: LlmServer, credential: str, platform_db: str
) -> None:
    with tags("workflow:lead_intake", f"client:{CLIENT}"):
        run = run_node(llm, LlmInput(client=CLIENT, credential=credential, prompt=PROMPT))

    assert isinstance(run.result, LlmOutput), run.result
    with session_scope(platform_db) as session:
        (row,) = session.scalars(
            select(LlmUsage).where(LlmUsage.flow_run_id == run.flow_run_id)
        ).all()
        assert (row.client, row.workflow, row.model) == (CLIENT, "lead_intake", "gpt-4o")
