"""Activation of per-client Prefect deployments and their schedules."""

from deployments.activation import (
    DeploymentPlan,
    activate,
    apply,
    deactivate,
    ensure_work_pool,
    pause,
    plan,
    resume,
)
from deployments.schedules import check_cron, check_timezone, next_runs

__all__ = [
    "DeploymentPlan",
    "activate",
    "apply",
    "check_cron",
    "check_timezone",
    "deactivate",
    "ensure_work_pool",
    "next_runs",
    "pause",
    "plan",
    "resume",
]
