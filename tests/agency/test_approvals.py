"""``services/approvals.py`` with the ``approve`` node on the real Prefect server.

Each flow runs in a background thread of the test process (as a worker would run it); the test
plays the reviewer through the service functions.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy import select

from agency.db import AuditLog, session_scope, upgrade
from agency.errors import ApprovalCancelled, InputInvalid, NotFound
from agency.settings import Settings
from nodes import ApproveInput, ApproveOutput, RouteInput, approve, route
from services import ApprovalView, add_client, answer_approval, list_pending_approvals

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'agency.db'}")
    upgrade(settings.platform_database_url)
    return settings


@pytest.fixture
def client(settings: Settings) -> str:
    slug = f"appr-{secrets.token_hex(3)}"
    add_client(settings, slug, slug)
    return slug


@flow(name="approval-demo")
def approval_demo(params: ApproveInput) -> tuple[ApproveOutput, str]:
    answer = approve(params)
    taken = route(
        RouteInput(
            client=params.client,
            data=answer.model_dump(),
            cases=[{"branch": "send", "when": "approved"}],
            default="hold",
        )
    )
    return answer, taken.branch


class Background:
    """A flow call running in a thread; ``result()`` joins it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list[Any] = []
        self._thread = threading.Thread(target=lambda: self._out.append(fn()), daemon=True)
        self._thread.start()

    def result(self, timeout: float = 60) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flow run did not finish"
        return self._out[0]


@pytest.fixture
def start() -> Iterator[Callable[[ApproveInput], Background]]:
    def run(params: ApproveInput) -> Background:
        def call() -> Any:
            with tags(f"client:{params.client}", "workflow:offers"):
                return approval_demo(params)

        return Background(call)

    yield run


def _wait_for_request(settings: Settings, client: str) -> ApprovalView:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pending = list_pending_approvals(settings, client)
        if pending:
            (view,) = pending
            return view
        time.sleep(0.3)
    raise AssertionError("no approval request appeared")


def test_a_paused_run_is_listed_answered_and_continues_down_the_branch(
    settings: Settings, client: str, start: Callable[[ApproveInput], Background]
) -> None:
    other = f"appr-{secrets.token_hex(3)}"
    add_client(settings, other, other)
    params = ApproveInput(
        client=client,
        message="Send the offer to Globex?",
        data={"amount": 1200},
        timeout_seconds=120,
        poll_interval_seconds=1,
    )
    running = start(params)

    view = _wait_for_request(settings, client)
    assert (view.workflow, view.message, view.kind, view.choices, view.data) == (
        "offers",
        "Send the offer to Globex?",
        "approve_reject",
        [],
        {"amount": 1200},
    )
    assert view.node.startswith("approve")
    assert view.expires_at is not None and view.expires_at > view.requested_at
    assert list_pending_approvals(settings, other) == []
    with pytest.raises(NotFound) as foreign:
        answer_approval(settings, other, view.flow_run_id, approved=True)
    with pytest.raises(NotFound) as unknown:
        answer_approval(settings, other, "6f1c2d3e-0000-4000-8000-000000000001", approved=True)
    assert str(foreign.value).replace(view.flow_run_id, "ID") == str(unknown.value).replace(
        "6f1c2d3e-0000-4000-8000-000000000001", "ID"
    )
    with pytest.raises(InputInvalid, match="approved=true or approved=false"):
        answer_approval(settings, client, view.flow_run_id, text="maybe")

    answer_approval(
        settings, client, view.flow_run_id, approved=True, comment="go", actor="alice@acme"
    )

    answer, branch = running.result()
    assert answer == ApproveOutput(
        approved=True, decision="approved", comment="go", reviewer="alice@acme"
    )
    assert branch == "send"
    assert list_pending_approvals(settings, client) == []
    with session_scope(settings.platform_database_url) as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "approval.answer")).all()
        assert [(r.actor, r.target, r.detail["approved"]) for r in rows] == [
            ("alice@acme", view.flow_run_id, True)
        ]
    with get_client(sync_client=True) as api:
        assert api.read_flow_run(view.flow_run_id).state.is_completed()  # type: ignore[union-attr]


def test_a_choice_request_takes_the_answer(
    settings: Settings, client: str, start: Callable[[ApproveInput], Background]
) -> None:
    params = ApproveInput(
        client=client,
        message="Which tone?",
        kind="choice",
        choices=["formal", "casual"],
        poll_interval_seconds=1,
    )
    running = start(params)
    view = _wait_for_request(settings, client)
    assert view.kind == "choice" and view.choices == ["formal", "casual"]
    with pytest.raises(InputInvalid, match="Choose one of: formal, casual"):
        answer_approval(settings, client, view.flow_run_id, choice="angry")

    answer_approval(settings, client, view.flow_run_id, choice="casual")

    answer, branch = running.result()
    assert (answer.decision, answer.choice, answer.approved, branch) == (
        "answered",
        "casual",
        None,
        "hold",
    )


def test_an_unanswered_request_times_out_with_its_policy(
    settings: Settings, client: str, start: Callable[[ApproveInput], Background]
) -> None:
    params = ApproveInput(
        client=client,
        message="Approve quickly?",
        timeout_seconds=3,
        on_timeout="reject",
        poll_interval_seconds=1,
    )
    running = start(params)
    view = _wait_for_request(settings, client)

    answer, branch = running.result()

    assert answer == ApproveOutput(approved=False, decision="timed_out")
    assert branch == "hold"
    with pytest.raises(InputInvalid):
        answer_approval(settings, client, view.flow_run_id, approved=True)


def test_the_cancel_policy_stops_the_run_before_the_next_step(
    settings: Settings, client: str
) -> None:
    params = ApproveInput(
        client=client,
        message="Go on?",
        timeout_seconds=2,
        on_timeout="cancel",
        poll_interval_seconds=1,
    )

    def call() -> Any:
        with tags(f"client:{client}"):
            return approval_demo(params, return_state=True)

    state = Background(call).result()

    assert state.is_failed()
    with pytest.raises(ApprovalCancelled, match="Nobody answered 'Go on\\?' within 2s"):
        state.result()
    with get_client(sync_client=True) as api:
        task_runs = api.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    assert [t.name.split("-")[0] for t in task_runs] == ["approve"]  # route never ran


def test_the_cli_lists_and_answers(start: Callable[[ApproveInput], Background]) -> None:
    from typer.testing import CliRunner

    from cli.commands.approvals import approvals_app
    from cli.main import _settings

    settings = _settings()  # the CLI's own settings and platform DB
    client = f"appr-{secrets.token_hex(3)}"
    add_client(settings, client, client)
    running = start(ApproveInput(client=client, message="Publish?", poll_interval_seconds=1))
    view = _wait_for_request(settings, client)
    runner = CliRunner()

    listed = runner.invoke(approvals_app, ["list", "--client", client])
    assert listed.exit_code == 0, listed.output
    fields = listed.output.rstrip("\n").split("\t")
    assert fields[:2] == [view.flow_run_id, "offers"] and fields[3:] == [
        "approve_reject",
        view.expires_at.isoformat(timespec="seconds"),  # type: ignore[union-attr]
        "Publish?",
    ]
    bad = runner.invoke(approvals_app, ["answer", view.flow_run_id, "--client", client])
    assert bad.exit_code == 2 and "approved=true or approved=false" in bad.output

    answered = runner.invoke(
        approvals_app,
        ["answer", view.flow_run_id, "--client", client, "--reject", "--actor", "bob"],
    )

    assert answered.exit_code == 0, answered.output
    answer, branch = running.result()
    assert (answer.decision, answer.reviewer, branch) == ("rejected", "bob", "hold")
