"""The ``agency-prefork`` Prefect worker type: each flow run in a child of a warm template."""

from deployments.prefork.configuration import (
    DEFAULT_PRELOAD,
    PreforkJobConfiguration,
    PreforkVariables,
)
from deployments.prefork.worker import PreforkWorker, PreforkWorkerResult

__all__ = [
    "DEFAULT_PRELOAD",
    "PreforkJobConfiguration",
    "PreforkVariables",
    "PreforkWorker",
    "PreforkWorkerResult",
]
