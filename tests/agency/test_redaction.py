"""Secrets loaded during a run are masked in what Prefect stores of its logs."""

from __future__ import annotations

import logging
import secrets
import time
from uuid import UUID

import pytest
from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.context import get_run_context

from agency.redaction import MASK, redact, register_secret
from blocks import load_credential, save_credential

pytestmark = pytest.mark.usefixtures("prefect_server")


@task
def leak(client: str) -> None:
    cred = load_credential(client, "smtp", "default")
    password = cred.password.get_secret_value()  # type: ignore[attr-defined]
    get_run_logger().info("task logger sees %s", password)
    print(f"printed {password}")
    try:
        raise RuntimeError(f"boom with {password}")
    except RuntimeError:
        get_run_logger().exception("traceback carries it too")


@flow(log_prints=True)
def leaky_flow(client: str) -> str:
    leak(client)
    cred = load_credential(client, "smtp", "default")
    get_run_logger().info(f"flow logger sees {cred.password.get_secret_value()}")  # type: ignore[attr-defined]
    return str(get_run_context().flow_run.id)  # type: ignore[union-attr]


def test_secrets_are_masked_in_run_logs(client_slug: str) -> None:
    password = f"pw-{secrets.token_hex(10)}"
    save_credential(
        client_slug,
        "smtp",
        "default",
        {"host": "mail.test", "password": password, "from_address": "a@b.test"},
    )
    run_id = UUID(leaky_flow(client_slug))

    messages = ""
    deadline = time.monotonic() + 15
    while "flow logger sees" not in messages and time.monotonic() < deadline:
        time.sleep(0.3)  # logs reach the API in batches
        with get_client(sync_client=True) as api:
            logs = api.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
        messages = "\n".join(log.message for log in logs)
    assert "task logger sees " + MASK in messages
    assert "printed " + MASK in messages
    assert "flow logger sees " + MASK in messages
    assert "traceback carries it too" in messages and f"boom with {MASK}" in messages
    assert password not in messages


def test_redact_masks_longest_first_and_ignores_tiny_values() -> None:
    register_secret("abc", "s3cr3t", "s3cr3t-longer", None)
    assert redact("x s3cr3t-longer y s3cr3t abc") == f"x {MASK} y {MASK} abc"


def test_filter_applies_to_plain_loggers(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("plain-logger-secret")
    logger = logging.getLogger("agency.test")
    with caplog.at_level(logging.INFO, logger="agency.test"):
        from agency.redaction import install_redaction_filter

        install_redaction_filter()
        logger.info("value=%s", "plain-logger-secret")
    assert "plain-logger-secret" not in caplog.text and MASK in caplog.text
