"""``exporter/collector.py`` and ``agency exporter`` against the session's real Prefect server and a
real platform DB (SQLite file, and PostgreSQL for the LLM sums), scraped over HTTP."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prefect import flow, tags, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags
from prefect.client.schemas.objects import TaskRun
from prefect.states import Pending, Scheduled
from prometheus_client.parser import text_string_to_metric_families

from agency.db import record_llm_usage, upgrade
from agency.settings import Settings
from exporter.collector import NODE_BUCKETS, RunningExporter, serve_exporter
from tests.fixtures._net import free_port, stop_process, wait_http

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """GET /metrics (must answer 200) parsed into {(sample name, sorted labels): value}."""
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def settings(tmp_path: Path, sqlite_database_url: str) -> Settings:
    upgrade(sqlite_database_url)
    return Settings(home=tmp_path, database_url=sqlite_database_url)


@pytest.fixture
def exporter(settings: Settings, prefect_server: str) -> Iterator[RunningExporter]:
    running = serve_exporter(settings, "127.0.0.1", 0)
    yield running
    running.stop()


# ---- flow runs and nodes ----------------------------------------------------------------------


@task(name="fetch")
def fetch() -> int:
    return 1


@task(name="summarise")
def summarise() -> str:
    time.sleep(1.1)  # lands above the 1 s bucket
    return "ok"


@task(name="deliver")
def deliver() -> None:
    raise ValueError("mailbox full")


@flow(name="exporter-report")
def report_flow() -> None:
    fetch()
    summarise()
    deliver(return_state=True)  # fails alone; the flow still completes


@flow(name="exporter-broken")
def broken_flow() -> None:
    fetch()
    raise RuntimeError("broken on purpose")


def _task_runs(client: str) -> list[TaskRun]:
    with get_client(sync_client=True) as api:
        runs = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"client:{client}"]))
        )
        return api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs]))
        )


def test_flow_runs_and_node_durations(exporter: RunningExporter) -> None:
    client = f"exp{secrets.token_hex(3)}"
    labels = {"client": client, "workflow": "report"}
    before = scrape(exporter.url)
    assert value(before, "agency_exporter_up", source="prefect") == 1.0
    assert not [k for k in before if ("client", client) in k[1]]

    with tags(f"client:{client}", "workflow:report"):
        report_flow()
        with pytest.raises(RuntimeError, match="broken on purpose"):
            broken_flow()

    # task-run states reach the API through events: wait until all four are counted
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(exporter.url)
        counted = sum(
            v
            for (name, lbl), v in samples.items()
            if name == "agency_node_duration_seconds_count" and ("client", client) in lbl
        )
        if counted >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    finished = "agency_flow_runs_finished_total"
    assert value(samples, finished, **labels, state="COMPLETED") == 1.0
    assert value(samples, finished, **labels, state="FAILED") == 1.0

    task_runs = _task_runs(client)
    assert sorted((t.name.split("-")[0], t.state_type.value) for t in task_runs) == [  # type: ignore[union-attr]
        ("deliver", "FAILED"),
        ("fetch", "COMPLETED"),
        ("fetch", "COMPLETED"),
        ("summarise", "COMPLETED"),
    ]
    hist = "agency_node_duration_seconds"
    for node, state, count in [
        ("fetch", "COMPLETED", 2),
        ("summarise", "COMPLETED", 1),
        ("deliver", "FAILED", 1),
    ]:
        series = {**labels, "node": node, "state": state}
        durations = [
            (t.end_time - t.start_time).total_seconds()  # type: ignore[operator]
            for t in task_runs
            if t.name.startswith(f"{node}-")
        ]
        assert value(samples, f"{hist}_count", **series) == count
        assert value(samples, f"{hist}_sum", **series) == pytest.approx(sum(durations), abs=1e-6)
        for le in NODE_BUCKETS:
            expected = sum(d <= le for d in durations)
            assert value(samples, f"{hist}_bucket", **series, le=str(float(le))) == expected
        assert value(samples, f"{hist}_bucket", **series, le="+Inf") == count
    series = {**labels, "node": "summarise", "state": "COMPLETED"}
    assert value(samples, f"{hist}_bucket", **series, le="1.0") == 0.0

    # a later scrape counts nothing twice
    again = scrape(exporter.url)
    for key, v in samples.items():
        if ("client", client) in key[1]:
            assert again[key] == v, key


def test_active_flow_runs(exporter: RunningExporter) -> None:
    client = f"exp{secrets.token_hex(3)}"
    labels = {"client": client, "workflow": "report"}
    now = datetime.now(UTC)
    run_tags = [f"client:{client}", "workflow:report"]
    with get_client(sync_client=True) as api:
        created = [
            api.create_flow_run(report_flow, tags=run_tags, state=state)
            for state in (
                Scheduled(scheduled_time=now - timedelta(minutes=5)),  # due: late
                Scheduled(scheduled_time=now + timedelta(hours=1)),  # not yet due
                Pending(),
            )
        ]
    try:
        samples = scrape(exporter.url)
        active = "agency_flow_runs_active"
        assert value(samples, active, **labels, state="SCHEDULED") == 1.0
        assert value(samples, active, **labels, state="PENDING") == 1.0
        assert value(samples, active, **labels, state="RUNNING") is None
    finally:
        with get_client(sync_client=True) as api:
            for run in created:
                api.delete_flow_run(run.id)


# ---- LLM usage from the platform DB ------------------------------------------------------------


def test_llm_tokens_and_cost(migrated_db_url: str, tmp_path: Path, prefect_server: str) -> None:
    rows = [
        ("acme", "digest", "gpt-4o-mini", 100, 20, 0.25),
        ("acme", "digest", "gpt-4o-mini", 50, 10, 0.5),
        ("acme", None, "gpt-4o", 7, 3, None),
        ("beta", "leads", "gpt-4o-mini", 1, 1, 0.125),
    ]
    for client, workflow, model, prompt, completion, cost in rows:
        record_llm_usage(
            migrated_db_url,
            client=client,
            workflow=workflow,
            flow_run_id=None,
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cost_usd=cost,
        )
    running = serve_exporter(Settings(home=tmp_path, database_url=migrated_db_url), "127.0.0.1", 0)
    try:
        samples = scrape(running.url)
    finally:
        running.stop()

    assert value(samples, "agency_exporter_up", source="database") == 1.0
    digest = {"client": "acme", "workflow": "digest", "model": "gpt-4o-mini"}
    untagged = {"client": "acme", "workflow": "", "model": "gpt-4o"}
    leads = {"client": "beta", "workflow": "leads", "model": "gpt-4o-mini"}
    got = {
        name: {
            tuple(sorted(lbl)): v for (n, lbl), v in samples.items() if n == f"agency_llm_{name}"
        }
        for name in ("calls_total", "tokens_total", "cost_usd_total")
    }

    def key(**labels: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(labels.items()))

    assert got["calls_total"] == {key(**digest): 2, key(**untagged): 1, key(**leads): 1}
    assert got["tokens_total"] == {
        key(**digest, kind="prompt"): 150,
        key(**digest, kind="completion"): 30,
        key(**untagged, kind="prompt"): 7,
        key(**untagged, kind="completion"): 3,
        key(**leads, kind="prompt"): 1,
        key(**leads, kind="completion"): 1,
    }
    assert got["cost_usd_total"] == {key(**digest): 0.75, key(**untagged): 0.0, key(**leads): 0.125}


# ---- sources down -------------------------------------------------------------------------------


def test_scrape_answers_when_prefect_is_down(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    record_llm_usage(
        settings.platform_database_url,
        client="acme",
        workflow="digest",
        flow_run_id=None,
        model="gpt-4o-mini",
        prompt_tokens=4,
        completion_tokens=2,
        total_tokens=6,
        cost_usd=None,
    )
    dead_api = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    running = serve_exporter(settings, "127.0.0.1", 0, api_url=dead_api)
    try:
        with caplog.at_level(logging.WARNING, logger="exporter.collector"):
            first = scrape(running.url)
            second = scrape(running.url)
    finally:
        running.stop()
    for samples in (first, second):
        assert value(samples, "agency_exporter_up", source="prefect") == 0.0
        assert value(samples, "agency_exporter_up", source="database") == 1.0
        tokens = {"client": "acme", "workflow": "digest", "model": "gpt-4o-mini"}
        assert value(samples, "agency_llm_tokens_total", **tokens, kind="prompt") == 4.0
        assert not [k for k in samples if k[0].startswith("agency_flow_runs_active")]
    warnings = [r.getMessage() for r in caplog.records if r.name == "exporter.collector"]
    assert len(warnings) == 1 and "cannot read prefect: ConnectError" in warnings[0], warnings


def test_scrape_answers_when_the_database_is_down(tmp_path: Path, prefect_server: str) -> None:
    dead_db = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/agency"
    running = serve_exporter(Settings(home=tmp_path, database_url=dead_db), "127.0.0.1", 0)
    try:
        samples = scrape(running.url)
    finally:
        running.stop()
    assert value(samples, "agency_exporter_up", source="database") == 0.0
    assert value(samples, "agency_exporter_up", source="prefect") == 1.0
    assert not [k for k in samples if k[0].startswith("agency_llm_")]


# ---- the CLI ------------------------------------------------------------------------------------


def test_agency_exporter_command(settings: Settings, prefect_server: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "AGENCY_HOME": str(tmp_path),
        "AGENCY_DATABASE_URL": settings.platform_database_url,
        "PREFECT_API_URL": prefect_server,
    }
    log = open(tmp_path / "exporter.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "exporter", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_http(url, timeout=60, proc=proc)
        samples = scrape(url)
    finally:
        stop_process(proc)
        log.close()
    assert value(samples, "agency_exporter_up", source="prefect") == 1.0
    assert value(samples, "agency_exporter_up", source="database") == 1.0
    assert f"exporter serving {url}" in (tmp_path / "exporter.log").read_text()
