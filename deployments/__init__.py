"""Activation of per-client Prefect deployments, schedules, the webhook gateway and workers.

Exports load lazily (PEP 562): Prefect imports ``deployments.prefork.worker`` through its
collection entry point in every Prefect process, and that must not drag in the flow catalog.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DeploymentPlan": "deployments.activation",
    "activate": "deployments.activation",
    "apply": "deployments.activation",
    "deactivate": "deployments.activation",
    "ensure_work_pool": "deployments.activation",
    "move_to_pool": "deployments.activation",
    "pause": "deployments.activation",
    "plan": "deployments.activation",
    "resume": "deployments.activation",
    "check_cron": "deployments.schedules",
    "check_timezone": "deployments.schedules",
    "next_runs": "deployments.schedules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deployments' has no attribute {name!r}")
