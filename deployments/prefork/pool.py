"""Create the work pool an ``agency-prefork`` worker polls."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from deployments.prefork.worker import PreforkWorker

__all__ = ["DEFAULT_POOL", "ensure_prefork_pool"]

DEFAULT_POOL = "agency-prefork"


async def ensure_prefork_pool(name: str = DEFAULT_POOL) -> None:
    """``POST /work_pools/`` of type ``agency-prefork`` with our base job template (409: kept)."""
    async with get_client() as client:
        try:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=PreforkWorker.type,
                    base_job_template=PreforkWorker.get_default_base_job_template(),
                )
            )
        except ObjectAlreadyExists:
            pass
