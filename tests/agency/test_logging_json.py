"""JSON log lines carry client, workflow and run ids inside a run; the production logging config
loads and masks secrets."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import yaml
from prefect import flow, get_run_logger, tags, task

from agency.logging_json import JsonFormatter
from agency.redaction import MASK, RedactingFilter, register_secret

pytestmark = pytest.mark.usefixtures("prefect_server")


@task
def step() -> None:
    get_run_logger().info("task says hello-json-task")


@flow(name="json_logs")
def noisy() -> None:
    get_run_logger().info("flow says hello %s", "json-flow")
    step()


def test_lines_carry_client_workflow_and_run_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger("prefect.flow_runs"), logging.getLogger("prefect.task_runs")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with tags("client:acme", "workflow:daily_digest"):
            noisy()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    flow_line = next(x for x in lines if x["message"] == "flow says hello json-flow")
    task_line = next(x for x in lines if x["message"] == "task says hello-json-task")
    assert flow_line["client"] == "acme" and flow_line["workflow"] == "daily_digest"
    assert flow_line["flow_run_id"] == task_line["flow_run_id"]
    assert task_line["task_run_id"] and task_line["level"] == "INFO"


def test_production_logging_config_masks_secrets() -> None:
    config = yaml.safe_load((Path(__file__).parents[2] / "infra" / "logging.yml").read_text())
    assert config["formatters"]["json"]["()"] == "agency.logging_json.JsonFormatter"
    assert all("redact" in h.get("filters", []) for h in config["handlers"].values())
    register_secret("hunter2-json-secret")
    record = logging.LogRecord(
        "agency", logging.INFO, __file__, 1, "pw=%s", ("hunter2-json-secret",), None
    )
    RedactingFilter().filter(record)
    assert json.loads(JsonFormatter().format(record))["message"] == f"pw={MASK}"
