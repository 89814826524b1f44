"""``nodes/aggregate.py``: the reductions, and ``summarize`` through the llm node."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agency.db import upgrade
from agency.errors import PermanentNodeError
from agency.settings import get_settings
from blocks import save_credential
from nodes import AggregateInput, AggregateOutput, aggregate
from tests.fixtures.llm_server import LlmServer
from tests.nodes import run_node

ORDERS = [{"order": {"total": 5}}, {"order": {"total": 7.5}}, {"order": {"total": -1}}]


@pytest.mark.parametrize(
    ("operation", "value"),
    [("count", 3), ("sum", 11.5), ("avg", 11.5 / 3), ("min", -1), ("max", 7.5)],
)
def test_numeric_reductions(operation: str, value: float) -> None:
    out = aggregate.fn(
        AggregateInput(client="acme", items=ORDERS, field="order.total", operation=operation)
    )

    assert out == AggregateOutput(value=value, count=3)


def test_concat_and_empty_lists() -> None:
    out = aggregate.fn(
        AggregateInput(client="acme", items=["a", {"b": 1}], operation="concat", separator=" | ")
    )
    assert out.value == 'a | {"b": 1}'
    assert aggregate.fn(AggregateInput(client="acme", items=[], operation="avg")).value is None
    assert aggregate.fn(AggregateInput(client="acme", items=[], operation="sum")).value == 0


def test_non_numbers_and_missing_fields_fail_clearly() -> None:
    with pytest.raises(PermanentNodeError, match="sum needs numbers"):
        aggregate.fn(AggregateInput(client="acme", items=[1, "2"], operation="sum"))
    with pytest.raises(PermanentNodeError, match="has no field 'order.price'"):
        aggregate.fn(
            AggregateInput(client="acme", items=ORDERS, field="order.price", operation="max")
        )


@pytest.mark.usefixtures("prefect_server")
def test_summarize_goes_through_the_llm_node(llm_server: LlmServer) -> None:
    upgrade(get_settings().platform_database_url)
    save_credential(
        "agg-tests",
        "openai",
        "local",
        {"api_key": llm_server.api_key, "base_url": llm_server.base_url},
    )

    run = run_node(
        aggregate,
        AggregateInput(
            client="agg-tests",
            items=["Revenue grew", {"note": "costs flat"}],
            operation="summarize",
            credential="local",
            instructions="Summarise these notes:",
        ),
    )

    out = run.result
    assert isinstance(out, AggregateOutput), out
    assert out.value == 'SUMMARY: Summarise these notes: - Revenue grew - {"note":'
    assert out.count == 2 and out.usage and out.usage.completion_tokens > 0
    (request,) = llm_server.chat_requests()
    assert request.body["messages"][-1]["content"].endswith('- {"note": "costs flat"}')


def test_summarize_needs_a_credential() -> None:
    with pytest.raises(ValidationError, match="credential is required"):
        AggregateInput(client="acme", items=[], operation="summarize")
    with pytest.raises(ValidationError) as info:
        AggregateInput.model_validate({"client": "acme", "items": [], "operation": "median"})
    assert info.value.errors()[0]["loc"] == ("operation",)
