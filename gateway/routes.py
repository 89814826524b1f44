"""The gateway's own routes: ``POST /hooks/<client>/<workflow>``, ``/healthz``, ``/readyz`` and
``/metrics``. The client API's routes are in :mod:`gateway.client_api`; both find the shared
:class:`gateway.intake.Gateway` at ``request.app.state.gateway``."""

from __future__ import annotations

import logging
import os

import anyio
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from agency.db import session_scope
from gateway.intake import Gateway, Rejected, accept, error_response

logger = logging.getLogger("agency.gateway")

router = APIRouter()


async def hook(request: Request) -> Response:
    """``POST /hooks/<client>/<workflow>``: verify, admit and answer (see :mod:`gateway.intake`)."""
    # a plain Starlette route: FastAPI's parameter solving and response serialisation
    # cost a fifth of a webhook's CPU and add nothing here
    gateway: Gateway = request.app.state.gateway
    metrics = gateway.metrics
    client, workflow = request.path_params["client"], request.path_params["workflow"]
    verifier = "unknown"
    try:
        hit, target = gateway.cached_target(client, workflow)
        if not hit:
            target = await gateway.fresh_target(client, workflow)
        if target is None or target.verifier is None:
            raise Rejected(404, "not_found", "No such webhook.")
        if not target.client_active:
            raise Rejected(403, "client_suspended", "This client is suspended.")
        if not target.accepting:
            raise Rejected(409, "inactive", "This webhook is not active.")
        verifier = target.verifier
        response = await accept(gateway, target, request)
        metrics.requests.labels(
            "duplicate" if response.status_code == 200 else "accepted", verifier
        ).inc()
        return response
    except Rejected as exc:
        metrics.requests.labels(exc.code, verifier).inc()
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except SQLAlchemyError:
        # nothing was persisted: the sender must retry, so say so instead of a bare 500
        logger.exception("platform database unavailable")
        metrics.requests.labels("unavailable", verifier).inc()
        return error_response(503, "unavailable", "Try again shortly.", {"Retry-After": "5"})


router.add_route("/hooks/{client}/{workflow}", hook, methods=["POST"], include_in_schema=False)


@router.get("/healthz", include_in_schema=False)
async def healthz() -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    """Readiness: the platform DB and the Prefect API both answer."""
    gateway: Gateway = request.app.state.gateway
    settings = gateway.settings
    checks: dict[str, str] = {}
    try:
        await anyio.to_thread.run_sync(_ping_db, gateway.url)
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = exc.__class__.__name__
    api = os.environ.get("PREFECT_API_URL", f"http://{settings.api_host}:{settings.api_port}/api")
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            answer = await http.get(f"{api.rstrip('/')}/health")
        checks["prefect"] = "ok" if answer.status_code == 200 else f"HTTP {answer.status_code}"
    except httpx.HTTPError as exc:
        checks["prefect"] = exc.__class__.__name__
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics_route(request: Request) -> Response:
    """Prometheus exposition of the gateway's and its dispatcher's metrics."""
    registry = request.app.state.gateway.metrics.registry
    data = await anyio.to_thread.run_sync(generate_latest, registry)
    return PlainTextResponse(data, media_type=CONTENT_TYPE_LATEST)


def _ping_db(url: str) -> None:
    with session_scope(url) as session:
        session.execute(text("SELECT 1"))
