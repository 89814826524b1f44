"""Tests of ``nodes/``, one module per node module, each against a real local server.

``run_node`` runs one node inside a small flow on the session's Prefect server and hands back
its output or exception plus how many attempts Prefect made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import Task, flow
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from pydantic import BaseModel


@dataclass(frozen=True)
class NodeRun:
    """The outcome of one node call: ``result`` is the output model or the raised exception."""

    result: Any
    task_run_id: UUID
    flow_run_id: str
    flow_name: str

    @property
    def error(self) -> BaseException | None:
        return self.result if isinstance(self.result, BaseException) else None

    def attempts(self) -> int:
        """How many times Prefect ran the task (1 + retries), read from the API."""
        with get_client(sync_client=True) as api:
            return api.read_task_run(self.task_run_id).run_count


def run_node(node: Task[..., Any], params: BaseModel, **options: Any) -> NodeRun:
    """Run ``node(params)`` in a flow named ``node-test-<kind>`` with no delay between retries."""
    task_ = node.with_options(retry_delay_seconds=0, **options)

    @flow(name=f"node-test-{node.name}")
    def harness() -> tuple[UUID, Any, str, str]:
        state = task_(params, return_state=True)
        task_run_id = state.state_details.task_run_id
        assert task_run_id is not None
        return task_run_id, state.result(raise_on_failure=False), flow_run.id, flow_run.flow_name

    task_run_id, result, flow_run_id, flow_name = harness()
    return NodeRun(result, task_run_id, flow_run_id, flow_name)
