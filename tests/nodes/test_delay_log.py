"""``nodes/delay.py`` and ``nodes/log_message.py``."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from pydantic import ValidationError

from agency.redaction import register_secret
from nodes import DelayInput, DelayOutput, LogMessageInput, LogMessageOutput, delay, log_message
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_delay_waits_at_least_the_seconds_asked() -> None:
    run = run_node(delay, DelayInput(client="acme", seconds=0.3))

    assert isinstance(run.result, DelayOutput)
    assert run.result.waited_seconds >= 0.3


def test_delay_bounds_are_validated() -> None:
    for seconds in (-1, 7 * 24 * 3600 + 1):
        with pytest.raises(ValidationError) as info:
            DelayInput(client="acme", seconds=seconds)
        assert info.value.errors()[0]["loc"] == ("seconds",)


def test_log_message_reaches_the_run_log_with_secrets_masked() -> None:
    register_secret("sk-live-abcdef123456")
    run = run_node(
        log_message,
        LogMessageInput(
            client="acme",
            message="{{ n }} leads, key {{ key }}",
            level="warning",
            context={"n": 3, "key": "sk-live-abcdef123456"},
        ),
    )

    assert run.result == LogMessageOutput(message="3 leads, key ********", level="warning")
    import time

    deadline = time.monotonic() + 10
    messages: list[str] = []
    while time.monotonic() < deadline and "3 leads, key ********" not in messages:
        with get_client(sync_client=True) as api:
            logs = api.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.flow_run_id])))
        messages = [log.message for log in logs]
        time.sleep(0.3)
    assert "3 leads, key ********" in messages
    assert not any("sk-live-abcdef123456" in m for m in messages)
