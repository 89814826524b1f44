"""``nodes/catalog.py`` and the policy every node shares (``nodes/_base.py``)."""

from __future__ import annotations

import json
from types import ModuleType

import pytest
from prefect.states import Completed, Failed

import nodes
from agency.errors import NotFound, PermanentNodeError, TransientNodeError
from nodes import (
    CATALOG,
    DEFAULT_RETRIES,
    CredentialInput,
    NodeInput,
    NodeOutput,
    get_node,
    list_nodes,
    retry_on_transient,
)


def test_catalog_lists_the_nodes_with_json_schemas() -> None:
    specs = list_nodes()

    assert {s.kind: s.credential_kind for s in specs} == {
        "aggregate": "openai",
        "approve": None,
        "db_query": "postgres",
        "delay": None,
        "google_sheets_append": "google",
        "http_request": "http_auth",
        "llm": "openai",
        "log_message": None,
        "notify": "slack_webhook",
        "read_file": "s3",
        "route": None,
        "scrape": None,
        "send_email": "smtp",
        "store_file": "s3",
        "transform": None,
    }
    assert [s.kind for s in specs] == sorted(s.kind for s in specs)
    for spec in specs:
        assert spec.task.name == spec.kind
        assert issubclass(spec.input_model, NodeInput)
        assert issubclass(spec.output_model, NodeOutput)
        assert spec.input_schema["type"] == spec.output_schema["type"] == "object"
        assert "client" in spec.input_schema["required"]
        if spec.credential_kind:
            assert "credential" in spec.input_schema["properties"]
        assert spec.description and spec.title
        json.dumps(spec.describe())


def test_every_example_is_valid_input() -> None:
    for spec in list_nodes():
        assert spec.example is not None, spec.kind
        spec.input_model.model_validate(spec.example)


def test_schemas_carry_what_forms_and_drafters_need() -> None:
    email = get_node("send_email").input_schema
    assert set(email["required"]) >= {"client", "credential", "to", "subject", "text"}
    assert email["properties"]["to"]["description"]
    assert "json" in get_node("llm").output_schema["properties"]
    assert get_node("llm").input_schema["properties"]["output"]["enum"] == ["text", "json"]
    # an optional credential for http_request, a required one where the node cannot work without
    assert "credential" not in get_node("http_request").input_schema["required"]
    assert issubclass(get_node("llm").input_model, CredentialInput)


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(
        NotFound, match="Unknown node kind 'fax'. Known kinds: aggregate, approve, db_query"
    ):
        get_node("fax")


def test_every_node_carries_the_default_policy() -> None:
    for spec in CATALOG.values():
        task = spec.task
        assert task.retries == DEFAULT_RETRIES
        assert task.retry_delay_seconds == [2.0, 4.0, 8.0]
        assert task.retry_jitter_factor
        assert task.retry_condition_fn is retry_on_transient
        # the bound is the node's own (its I/O timeouts), not Prefect's thread timeout
        assert task.node_timeout_seconds > 0 and task.timeout_seconds is None


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (TransientNodeError("503"), True),
        (PermanentNodeError("404"), False),
        (ValueError("bug"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, retry: bool) -> None:
    task = get_node("http_request").task
    state = Failed(data=error)

    assert retry_on_transient(task, None, state) is retry  # type: ignore[arg-type]


def test_a_completed_state_is_not_retried() -> None:
    task = get_node("http_request").task

    assert retry_on_transient(task, None, Completed(data=1)) is False  # type: ignore[arg-type]


def test_all_is_complete() -> None:
    public = {
        n for n, v in vars(nodes).items() if not n.startswith("_") and not isinstance(v, ModuleType)
    }
    assert public == set(nodes.__all__)
