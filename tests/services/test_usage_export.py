"""Usage for invoicing: the CSV and JSON exports (portal and ``agency usage export``) carry exactly
the Usage page's numbers for the same month and client, and the agency's all-clients table; a
client user cannot export another client's usage."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from agency.db import record_llm_usage, utcnow
from agency.errors import AccessDenied
from agency.settings import get_settings
from cli.main import app
from services import runs, usage
from tests.fixtures.portal import PortalWorld, make_run

APP = str(Path(__file__).resolve().parents[2] / "portal" / "app.py")
LABELS = {"LLM tokens": "llm_tokens", "cost (USD)": "cost_usd"}


@pytest.fixture
def world(portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[PortalWorld]:
    """A's and B's runs and LLM calls this month; the CLI and the portal read this world."""
    w = portal_world
    monkeypatch.setenv("AGENCY_HOME", str(w.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", w.settings.work_pool)
    get_settings.cache_clear()
    spend = [
        (w.client_a, "daily_digest", 1200, 0.0123456),
        (w.client_a, "daily_digest", 800, 0.01),
        (w.client_a, "offers", 50, None),
        (w.client_b, "daily_digest", 999, 0.5),
    ]
    for client, workflow, tokens, cost in spend:
        record_llm_usage(
            w.settings.platform_database_url,
            client=client,
            workflow=workflow,
            flow_run_id=None,
            model="gpt-4o-mini",
            prompt_tokens=tokens - 10,
            completion_tokens=10,
            total_tokens=tokens,
            cost_usd=cost,
        )
    for state in (StateType.COMPLETED, StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED):
        make_run(w.client_a, state)
    make_run(w.client_a, StateType.CRASHED, workflow="offers")
    make_run(w.client_b, StateType.FAILED)
    yield w
    get_settings.cache_clear()


def _month() -> str:
    return f"{utcnow():%Y-%m}"


def _csv(text: str | bytes) -> list[dict[str, Any]]:
    """CSV rows with the numbers as numbers (an empty cost: ``None``)."""
    raw = text.decode() if isinstance(text, bytes) else text
    rows = list(csv.DictReader(io.StringIO(raw)))
    for row in rows:
        for key in ("runs", *usage.OUTCOMES, "llm_tokens"):
            row[key] = int(row[key])
        row["cost_usd"] = float(row["cost_usd"]) if row["cost_usd"] else None
    return rows


def _page(principal: object, page: str, *clicks: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["principal"] = principal
    at.run()
    at.switch_page(f"pages/{page}").run()
    for key in clicks:
        at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _rows(at: AppTest, index: int = 0) -> list[dict[str, Any]]:
    """The page's usage table as export rows (its labels back to the export's keys)."""
    frame = at.dataframe[index].value
    rows = frame.rename(columns=LABELS).to_dict("records")
    for row in rows:
        row["cost_usd"] = None if row["cost_usd"] != row["cost_usd"] else row["cost_usd"]  # NaN
        row.setdefault("month", _month())
    return rows


def _downloaded(at: AppTest) -> tuple[str, bytes]:
    """The file handed to the browser by ``send_file`` (name and bytes)."""
    (frame,) = at.get("iframe")
    page = frame.proto.srcdoc
    name = json.loads(re.search(r"link\.download = (\"[^\"]*\");", page).group(1))
    return name, base64.b64decode(re.search(r'atob\("([^"]*)"\)', page).group(1))


def test_client_csv_and_json_equal_the_usage_page(world: PortalWorld) -> None:
    w, month = world, _month()
    name, content = usage.export_usage(w.settings, w.a, month)
    assert name == f"usage-{month}-{w.client_a}.csv"
    exported = _csv(content)
    assert [(r["client"], r["workflow"]) for r in exported] == [
        (w.client_a, "daily_digest"),
        (w.client_a, "offers"),
    ]
    digest, offers = exported
    assert (digest["runs"], digest["completed"], digest["failed"], digest["cancelled"]) == (
        4,
        2,
        1,
        1,
    )
    assert (digest["llm_tokens"], digest["cost_usd"]) == (2000, 0.0223)
    assert (offers["runs"], offers["failed"], offers["llm_tokens"], offers["cost_usd"]) == (
        1,
        1,
        50,
        None,
    )

    at = _page(w.a, "client/usage.py", "usage.csv")
    assert _rows(at) == [{k: v for k, v in r.items() if k != "client"} for r in exported]
    assert _downloaded(at) == (name, content)  # the page's own download

    _, as_json = usage.export_usage(w.settings, w.a, month, fmt="json")
    document = json.loads(as_json)
    assert document["month"] == month and document["rows"] == exported


def test_agency_all_clients_table_and_csv_agree(world: PortalWorld) -> None:
    w, month = world, _month()
    name, content = usage.export_usage(w.settings, w.agency, month, all_clients=True)
    assert name == f"usage-{month}-all-clients.csv"
    exported = [r for r in _csv(content) if r["client"] in (w.client_a, w.client_b)]
    assert {(r["client"], r["workflow"]) for r in exported} == {
        (w.client_a, "daily_digest"),
        (w.client_a, "offers"),
        (w.client_b, "daily_digest"),
    }
    at = _page(w.agency, "agency/costs.py", "costs.show", "costs.csv")
    ours = {w.client_a, w.client_b}
    assert [r for r in _rows(at, -1) if r["client"] in ours] == exported
    shown_name, shown_csv = _downloaded(at)
    assert shown_name == name and [r for r in _csv(shown_csv) if r["client"] in ours] == exported
    # acting for one client, the agency gets that client's own figures
    _, one = usage.export_usage(w.settings, w.agency, month, client=w.client_b)
    assert _csv(one) == [r for r in exported if r["client"] == w.client_b]


def test_cli_export_prints_the_same_figures(world: PortalWorld) -> None:
    w, month = world, _month()
    runner = CliRunner()
    result = runner.invoke(
        app, ["usage", "export", "--month", month, "--client", w.client_a, "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.encode() == usage.export_usage(w.settings, w.a, month)[1]

    result = runner.invoke(app, ["usage", "export", "--month", month, "--format", "json"])
    assert result.exit_code == 0, result.output
    everyone = json.loads(result.output)["rows"]
    _, staff_json = usage.export_usage(w.settings, w.agency, month, all_clients=True, fmt="json")
    assert everyone == json.loads(staff_json)["rows"]
    assert {w.client_a, w.client_b} <= {r["client"] for r in everyone}

    for argv, needle in (
        (["--month", "2025-13"], "is not a month"),
        (["--month", month, "--client", "ghost"], "Unknown client 'ghost'"),
    ):
        result = runner.invoke(app, ["usage", "export", *argv])
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: ") and needle in line


def test_counting_by_workflow_equals_reading_every_run(world: PortalWorld) -> None:
    w = world
    start, end = usage.month_bounds(_month())
    hinted = runs.count_outcomes(w.client_a, start, end, workflows={"daily_digest", "offers"})
    assert hinted == runs.count_outcomes(w.client_a, start, end)  # every run read
    # a run of a workflow the hint does not name: counting notices and reads every run
    make_run(w.client_a, workflow="orphan")
    counted = runs.count_outcomes(w.client_a, start, end, workflows={"daily_digest", "offers"})
    assert counted[(w.client_a, "orphan")]["completed"] == 1
    assert counted == runs.count_outcomes(w.client_a, start, end)
    lines = usage.month_usage(w.settings, w.a, _month())
    assert [(x.workflow, x.runs) for x in lines] == [
        ("daily_digest", 4),
        ("offers", 1),
        ("orphan", 1),
    ]


def test_a_client_user_cannot_export_another_clients_usage(world: PortalWorld) -> None:
    w, month = world, _month()
    for call in (
        lambda: usage.export_usage(w.settings, w.a, month, client=w.client_b),
        lambda: usage.export_usage(w.settings, w.a, month, all_clients=True),
        lambda: usage.month_usage(w.settings, w.b, month, client=w.client_a),
    ):
        with pytest.raises(AccessDenied):
            call()
    name, content = usage.export_usage(w.settings, w.b, month)
    assert w.client_a not in content.decode() and name.endswith(f"-{w.client_b}.csv")
    assert [r["llm_tokens"] for r in _csv(content)] == [999]
