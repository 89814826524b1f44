"""The ``agency-prefork`` Prefect worker type: each flow run in a child of a warm template."""

from deployments.prefork.configuration import (
    DEFAULT_PRELOAD,
    PreforkJobConfiguration,
    PreforkVariables,
)
from deployments.prefork.pool import DEFAULT_POOL, ensure_prefork_pool
from deployments.prefork.worker import PreforkWorker, PreforkWorkerResult

__all__ = [
    "DEFAULT_POOL",
    "DEFAULT_PRELOAD",
    "PreforkJobConfiguration",
    "PreforkVariables",
    "PreforkWorker",
    "PreforkWorkerResult",
    "ensure_prefork_pool",
]
