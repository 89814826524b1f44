"""The picture of a workflow on the session's real Prefect server: a prebuilt flow
(``event_archive``) and a registered spec run in this process, tagged like a deployment's runs;
each step takes the state of its task runs in the client's latest run, a running step is blue,
another client sees no run; the Catalog and Workflows pages draw it with Graphviz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from streamlit.testing.v1 import AppTest

from agency.errors import AccessDenied
from agency.settings import get_settings
from flows.event_archive import EventArchiveSettings, event_archive
from flows.outline import Outline, OutlineStep
from portal.components.workflow_graph import COLOURS, graph_source
from services import workspace
from services.workflow_picture import pictures, step_states
from tests.fixtures._net import free_port
from tests.fixtures.portal import PendingApproval, PortalWorld

APP = str(Path(__file__).resolve().parents[2] / "portal" / "app.py")
SPEC = """
name: picture-demo
title: Picture demo
nodes:
  - {id: pick, node: transform, params: {data: {a: 1}, expression: a}, description: Pick a value}
  - {id: fetch, node: http_request, retries: 0,
     params: {url: "http://127.0.0.1:PORT/nothing", timeout_seconds: 2}}
  - {id: tell, node: log_message, params: {message: "the fetch failed"}}
  - {id: use, node: log_message, params: {message: "fetched"}}
edges:
  - {from: pick, to: fetch}
  - {from: fetch, to: tell, on: failed}
  - {from: fetch, to: use}
"""


@pytest.fixture
def world(
    portal_world: PortalWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PortalWorld]:
    """The world with ``picture-demo`` registered; the portal reads its settings from the env."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "picture-demo.yaml").write_text(SPEC.replace("PORT", str(free_port())))
    monkeypatch.setenv("AGENCY_SPEC_DIR", str(specs))
    monkeypatch.setenv("AGENCY_HOME", str(portal_world.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", portal_world.settings.work_pool)
    get_settings.cache_clear()
    yield portal_world
    get_settings.cache_clear()


def _archive(client: str, event: dict[str, object], expression: str) -> None:
    """One ``event_archive`` run of ``client``, tagged as its deployment tags them."""
    settings = EventArchiveSettings(expression=expression)
    with tags(f"client:{client}", "workflow:event_archive"):
        event_archive(client, settings, event=event, return_state=True)


def test_the_last_runs_task_runs_colour_the_prebuilt_flows_steps(world: PortalWorld) -> None:
    s, a = world.settings, world.a
    (never,) = pictures(s, a, ["event_archive"]).values()
    assert never.run is None and never.steps == {"pick": "not_run", "store": "not_run"}

    _archive(world.client_a, {"order": {"id": 7}}, "order")
    (done,) = pictures(s, a, ["event_archive"]).values()
    assert done.run is not None and done.run.state == "COMPLETED"
    assert done.steps == {"pick": "completed", "store": "completed"}

    # the newest run wins: the expression finds nothing, the run fails before storing
    _archive(world.client_a, {"other": 1}, "order")
    (failed,) = pictures(s, a, ["event_archive"]).values()
    assert failed.run is not None and failed.run.id != done.run.id
    assert failed.run.state == "FAILED"
    assert failed.steps == {"pick": "completed", "store": "not_run"}

    # client B has no run of it; a client cannot ask for another client's picture
    (other,) = pictures(s, world.b, ["event_archive"]).values()
    assert other.run is None and set(other.steps.values()) == {"not_run"}
    with pytest.raises(AccessDenied):
        pictures(s, world.b, ["event_archive"], client=world.client_a)


def test_a_specs_steps_follow_its_failure_edge_and_skipped_branch(world: PortalWorld) -> None:
    flow = workspace.manifest("picture-demo")
    assert flow.outline is not None
    from flows.spec_catalog import spec_picture_demo  # type: ignore[attr-defined]

    with tags(f"client:{world.client_a}", "workflow:picture-demo"):
        state = spec_picture_demo(world.client_a, return_state=True)
    assert state.is_completed()  # the failure is handled by the `on: failed` edge
    drawn = pictures(world.settings, world.a, ["picture-demo"])["picture-demo"]
    assert drawn.steps == {
        "pick": "completed",
        "fetch": "failed",
        "tell": "completed",
        "use": "not_run",  # the branch not taken ends as a Skipped task run
    }
    dot = graph_source(drawn)
    fill, border = COLOURS["failed"]
    assert f'fetch [label=Fetch color="{border}" fillcolor="{fill}"' in dot
    assert f'pick [label="Pick a value" color="{COLOURS["completed"][1]}"' in dot
    assert f'use [label=Use color="{COLOURS["not_run"][1]}"' in dot
    assert 'fetch -> tell [label="if it fails"' in dot


def test_a_step_that_waits_is_running(world: PortalWorld) -> None:
    pending = PendingApproval(world.client_a, "Publish the picture?")
    run_id = pending.wait_listed(world.settings, world.a)
    with get_client(sync_client=True) as api:
        task_runs = api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    outline = Outline(steps=(OutlineStep(id="ask", title="Ask", task="approve"),))
    assert step_states(outline, task_runs) == {"ask": "running"}
    workspace.answer_approval(world.settings, world.a, run_id, approved=True)
    assert pending.result().approved is True


def test_catalog_and_workflows_pages_draw_the_picture(world: PortalWorld) -> None:
    workspace.activate_workflow(world.settings, world.a, "event_archive", {}, None)
    _archive(world.client_a, {"order": {"id": 8}}, "order")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["principal"] = world.a
    at.run()
    at.switch_page("pages/client/catalog.py").run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [c.proto.spec for c in at.get("graphviz_chart")]
    archive = next(c for c in charts if "digraph event_archive" in c)
    assert 'label="Pick what matters"' in archive and 'label="Store it as a file"' in archive
    assert archive.count(f'fillcolor="{COLOURS["completed"][0]}"') == 2
    digest = next(c for c in charts if "digraph daily_digest" in c)  # not active: grey
    assert digest.count(f'fillcolor="{COLOURS["not_run"][0]}"') == 3

    at.switch_page("pages/client/workflows.py").run()
    at.selectbox(key="wf.workflow").set_value("event_archive").run()
    assert not at.exception, [e.value for e in at.exception]
    (chart,) = [c.proto.spec for c in at.get("graphviz_chart")]
    assert chart.count(f'fillcolor="{COLOURS["completed"][0]}"') == 2
    assert any("Last run of" in c.value and "Completed" in c.value for c in at.caption)


def test_without_prefect_the_steps_are_drawn_without_states(world: PortalWorld) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workspace.activate_workflow(world.settings, world.a, "event_archive", {}, None)
    closed = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    with temporary_settings(updates={PREFECT_API_URL: closed}):
        drawn = pictures(world.settings, world.a, ["event_archive", "daily_digest"],
                         runs_of=["event_archive"])  # fmt: skip
    assert drawn["event_archive"].runs_unavailable and drawn["event_archive"].run is None
    assert set(drawn["event_archive"].steps.values()) == {"not_run"}
    assert not drawn["daily_digest"].runs_unavailable  # not asked for: nothing was lost
