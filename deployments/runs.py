"""A client's flow runs: start one now and follow it; list or delete them all (offboarding)."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import LogSort
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from agency.errors import NotFound


def start_run(workflow: str, client: str) -> FlowRun:
    """Create a flow run of ``<workflow>/<client>`` now (tagged ``trigger:manual``)."""
    try:
        return run_deployment(  # type: ignore[return-value]
            name=f"{workflow}/{client}", timeout=0, tags=["trigger:manual"]
        )
    except ObjectNotFound:
        raise NotFound(f"Workflow '{workflow}' is not activated for client '{client}'.") from None


def follow_run(
    flow_run_id: UUID,
    emit: Callable[[str], None],
    timeout: float = 900,
    poll: float = 1.0,
    settle: float = 5.0,
) -> str:
    """Emit the run's log lines as they arrive until it ends; return the final state type.

    A run's last lines reach the API after its final state (the runner ships logs in batches),
    so once the run is final this keeps reading until the engine's own closing line ("Finished
    in state ...") has arrived, or ``settle`` seconds pass with nothing new (a crashed run never
    writes it).
    """
    seen = 0
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    with get_client(sync_client=True) as api:
        while True:
            run = api.read_flow_run(flow_run_id)
            final = run.state is not None and run.state.is_final()
            logs = api.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                sort=LogSort.TIMESTAMP_ASC,
                offset=seen,
            )
            closing = False
            for log in logs:
                emit(f"{log.timestamp:%H:%M:%S} {log.message}")
                closing = closing or (
                    log.task_run_id is None and log.message.startswith("Finished in state")
                )
            seen += len(logs)
            if final:
                state = run.state.type.value if run.state else "UNKNOWN"
                if closing:
                    return state
                if logs:
                    quiet_since = None
                    continue  # drain remaining log pages first
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return state
                time.sleep(0.25)
                continue
            if time.monotonic() > deadline:
                emit(f"still {run.state.name if run.state else 'unknown'} after {timeout:.0f}s")
                return run.state.type.value if run.state else "UNKNOWN"
            time.sleep(poll)


def client_runs(client: str, page: int = 200) -> list[FlowRun]:
    """Every flow run tagged ``client:<client>``, oldest first (``POST /flow_runs/filter``)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    found: list[FlowRun] = []
    runs_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[f"client:{client}"]))
    with get_client(sync_client=True) as api:
        while True:
            batch = api.read_flow_runs(
                flow_run_filter=runs_filter,
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=page,
                offset=len(found),
            )
            found.extend(batch)
            if len(batch) < page:
                return found


def delete_client_runs(client: str) -> int:
    """Delete every flow run tagged ``client:<client>`` (task runs and logs go with them);
    return how many. ``POST /flow_runs/bulk_delete``, 50 runs a call (the server's limit)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    runs_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[f"client:{client}"]))
    body = {"flow_runs": runs_filter.model_dump(mode="json", exclude_unset=True), "limit": 50}
    deleted = 0
    with get_client(sync_client=True) as api:
        while True:
            # the typed client has no bulk delete; its HTTP client carries URL and auth
            answer = api._client.post("/flow_runs/bulk_delete", json=body)
            answer.raise_for_status()
            ids = answer.json().get("deleted", [])
            deleted += len(ids)
            if not ids:
                return deleted
