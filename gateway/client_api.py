"""The client API: clients' own systems start and follow their runs with a per-client API key.

Every route takes ``Authorization: Bearer agk_…`` (401 without a valid key) and sees only the
key's client: another client's run or delivery is answered 404, exactly like a missing one.

- ``POST /api/v1/workflows/<workflow>/runs`` — like a webhook: 202 ``{"delivery_id"}``
  (``Idempotency-Key`` dedupes for 24 h: 200 with the first id), 404, 409, 413, 422, 429.
- ``GET /api/v1/runs`` — this client's runs, newest first (``workflow``, ``state``, ``limit``,
  ``offset``).
- ``GET /api/v1/runs/<id>`` — state, node (task run) states and outputs (artifacts).
- ``POST /api/v1/runs/<id>/cancel`` — 202 cancelling, 409 when already finished.
- ``GET /api/v1/deliveries/<id>`` — which run a webhook became.
- ``GET /api/v1/runs/<id>/events`` — Server-Sent Events of state and node changes until the
  run ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import anyio
import httpx
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling
from pydantic import BaseModel, Field
from sqlalchemy import select

from agency.db import WebhookDelivery
from agency.errors import ClientSuspended
from gateway.intake import Rejected, admit, event_model, parse_event, read_body

router = APIRouter(prefix="/api/v1", tags=["client API"])
bearer = HTTPBearer(auto_error=False, description="A client API key: `agk_…`.")

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
SSE_POLL_SECONDS = 1.0


class ApiError(Exception):
    """An error answer of the client API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code.")
    message: str = Field(description="What went wrong, in a sentence.")


class Accepted(BaseModel):
    delivery_id: str = Field(description="Id of the accepted event; see /deliveries/{id}.")
    duplicate: bool = Field(default=False, description="True when an earlier request matched.")


class RunSummary(BaseModel):
    id: str
    name: str
    workflow: str | None
    state: str | None
    created: datetime | None
    start_time: datetime | None
    end_time: datetime | None


class RunList(BaseModel):
    runs: list[RunSummary]
    limit: int
    offset: int


class NodeState(BaseModel):
    id: str
    name: str
    state: str | None


class Output(BaseModel):
    key: str | None
    type: str | None
    description: str | None
    data: Any = None


class RunDetail(RunSummary):
    parameters_event: dict[str, Any] | None = Field(
        default=None, description="The event the run was started with."
    )
    nodes: list[NodeState]
    outputs: list[Output]


class Delivery(BaseModel):
    id: str
    workflow: str
    received_at: datetime
    status: str = Field(description="pending, dispatched or failed.")
    flow_run_id: str | None
    batch_id: str | None = Field(
        default=None, description="The batch this event was grouped into (batch triggers)."
    )
    outcome: str | None = Field(
        default=None,
        description="In a batch run: done, or failed (see `error`); null until the run says "
        "or, if it ends without saying, until the dispatcher fails it with the reason.",
    )
    error: str | None = Field(default=None, description="Why the event failed, if it did.")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid API key."},
    403: {"model": ErrorBody, "description": "The client is suspended (`client_suspended`)."},
    404: {"model": ErrorBody, "description": "No such object for this client."},
}


async def api_client(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The slug of the client whose key authenticates the request; 401 otherwise."""
    from services.api_keys import client_for_key

    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "Send Authorization: Bearer <API key>.")
    gateway = request.app.state.gateway
    try:
        slug = await anyio.to_thread.run_sync(
            client_for_key, gateway.settings, credentials.credentials
        )
    except ClientSuspended as exc:
        raise ApiError(403, "client_suspended", str(exc)) from None
    if slug is None:
        raise ApiError(401, "unauthorized", "Unknown or revoked API key.")
    return slug


Client = Annotated[str, Depends(api_client)]


def _tag(tags: list[str], prefix: str) -> str | None:
    return next((t.removeprefix(prefix) for t in tags if t.startswith(prefix)), None)


def _summary(run: FlowRun) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "name": run.name,
        "workflow": _tag(run.tags, "workflow:"),
        "state": run.state.type.value if run.state else None,
        "created": run.created,
        "start_time": run.start_time,
        "end_time": run.end_time,
    }


async def _own_run(api: PrefectClient, client: str, run_id: str) -> FlowRun:
    try:
        run = await api.read_flow_run(UUID(run_id))
    except (ValueError, ObjectNotFound):
        raise ApiError(404, "not_found", "No such run.") from None
    if f"client:{client}" not in run.tags:
        raise ApiError(404, "not_found", "No such run.")
    return run


@router.post(
    "/workflows/{workflow}/runs",
    status_code=202,
    response_model=Accepted,
    responses={
        **ERRORS,
        200: {"model": Accepted, "description": "Repeat of an Idempotency-Key."},
        409: {"model": ErrorBody, "description": "The activation is not active."},
        413: {"model": ErrorBody, "description": "Body over 1 MiB."},
        415: {"model": ErrorBody, "description": "Not JSON."},
        422: {"model": ErrorBody, "description": "Not a JSON object / fails the input model."},
        429: {"model": ErrorBody, "description": "Over the hourly budget; see Retry-After."},
    },
    summary="Start a run with an event",
)
async def start_run(
    workflow: str,
    request: Request,
    client: Client,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Queue a run of the client's activated ``workflow`` with the JSON body as its event."""
    gateway = request.app.state.gateway
    target = await gateway.fresh_target(client, workflow)
    try:
        if target is None:
            raise Rejected(404, "not_found", "No such workflow for this client.")
        if not target.client_active:
            raise Rejected(403, "client_suspended", "This client is suspended.")
        if not target.activation_active:
            raise Rejected(409, "inactive", "This workflow is not active.")
        body = await read_body(request)
        payload = parse_event(request.headers.get("content-type"), body, event_model(workflow))
        dedupe = f"api:{idempotency_key}" if idempotency_key else None
        return await admit(gateway, target, payload, dedupe, "api")
    except Rejected as exc:
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, exc.status, headers=exc.headers
        )


@router.get("/runs", response_model=RunList, responses=ERRORS, summary="List runs")
async def list_runs(
    client: Client,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[StateType | None, Query(description="Prefect state type.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> dict[str, Any]:
    """This client's runs, newest first."""
    tags = [f"client:{client}"] + ([f"workflow:{workflow}"] if workflow else [])
    flow_filter = FlowRunFilter(
        tags=FlowRunFilterTags(all_=tags),
        state=None
        if state is None
        else FlowRunFilterState(type=FlowRunFilterStateType(any_=[state])),
    )
    async with get_client() as api:
        runs = await api.read_flow_runs(
            flow_run_filter=flow_filter,
            sort=FlowRunSort.START_TIME_DESC,
            limit=limit,
            offset=offset,
        )
    return {"runs": [_summary(r) for r in runs], "limit": limit, "offset": offset}


@router.get("/runs/{run_id}", response_model=RunDetail, responses=ERRORS, summary="Read a run")
async def read_run(run_id: str, client: Client) -> dict[str, Any]:
    """State, node states and outputs of one of this client's runs."""
    async with get_client() as api:
        run = await _own_run(api, client, run_id)
        tasks = await api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
        artifacts = await api.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    event = run.parameters.get("event")
    return {
        **_summary(run),
        "parameters_event": event if isinstance(event, dict) else None,
        "nodes": [
            {"id": str(t.id), "name": t.name, "state": t.state.type.value if t.state else None}
            for t in tasks
        ],
        "outputs": [
            {"key": a.key, "type": a.type, "description": a.description, "data": a.data}
            for a in artifacts
        ],
    }


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=RunSummary,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "The run already ended."}},
    summary="Cancel a run",
)
async def cancel_run(run_id: str, client: Client) -> dict[str, Any]:
    """Ask Prefect to cancel one of this client's runs."""
    async with get_client() as api:
        run = await _own_run(api, client, run_id)
        if run.state is not None and run.state.type.value in TERMINAL:
            raise ApiError(409, "finished", "The run already ended.")
        await api.set_flow_run_state(run.id, Cancelling(), force=True)
        run = await api.read_flow_run(run.id)
    return _summary(run)


@router.get(
    "/deliveries/{delivery_id}",
    response_model=Delivery,
    responses=ERRORS,
    summary="Read a delivery",
)
async def read_delivery(delivery_id: str, request: Request, client: Client) -> dict[str, Any]:
    """Which run an accepted webhook or API event became (``flow_run_id`` once dispatched)."""
    from services.scoping import client_session_at

    url = request.app.state.gateway.url

    def load() -> dict[str, Any] | None:
        with client_session_at(url, client) as session:
            d = session.scalar(
                select(WebhookDelivery).where(
                    WebhookDelivery.id == delivery_id[:36], WebhookDelivery.client == client
                )
            )
            if d is None:
                return None
            return {
                "id": d.id,
                "workflow": d.workflow,
                "received_at": d.received_at,
                "status": d.status,
                "flow_run_id": d.flow_run_id,
                "batch_id": d.batch_id,
                "outcome": d.outcome,
                "error": d.outcome_error or (d.last_error if d.status == "failed" else None),
            }

    found = await anyio.to_thread.run_sync(load)
    if found is None:
        raise ApiError(404, "not_found", "No such delivery.")
    return found


@router.get(
    "/runs/{run_id}/events",
    responses={
        **ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "state and node events"},
    },
    summary="Follow a run (Server-Sent Events)",
)
async def run_events(run_id: str, client: Client) -> StreamingResponse:
    """``event: state`` / ``event: node`` messages with JSON data, then ``event: end``."""
    async with get_client() as api:
        await _own_run(api, client, run_id)

    async def stream() -> AsyncIterator[str]:
        seen: dict[str, str | None] = {}
        async with get_client() as api:
            while True:
                try:
                    run = await api.read_flow_run(UUID(run_id))
                    tasks = await api.read_task_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
                    )
                except (httpx.HTTPError, ObjectNotFound):
                    yield "event: error\ndata: {}\n\n"
                    return
                state = run.state.type.value if run.state else None
                if seen.get("run") != state:
                    seen["run"] = state
                    yield _sse("state", {"run_id": run_id, "state": state})
                for t in tasks:
                    node_state = t.state.type.value if t.state else None
                    if seen.get(str(t.id)) != node_state:
                        seen[str(t.id)] = node_state
                        yield _sse("node", {"id": str(t.id), "name": t.name, "state": node_state})
                if state in TERMINAL:
                    yield _sse("end", {"run_id": run_id, "state": state})
                    return
                await asyncio.sleep(SSE_POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream")


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def install_error_handlers(app: Any) -> None:
    """Answer ``ApiError`` and Prefect outages as JSON (never a bare 500)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return JSONResponse({"error": exc.code, "message": exc.message}, exc.status)

    @app.exception_handler(httpx.TransportError)
    async def _prefect_down(request: Request, exc: httpx.TransportError) -> Response:
        return JSONResponse(
            {"error": "unavailable", "message": "The orchestrator is unreachable; retry."},
            503,
            headers={"Retry-After": "5"},
        )
