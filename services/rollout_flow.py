"""The ``rollout_tick`` Prefect flow: evaluate every running canary (see ``services.rollout``).

Deploy it on the platform's work pool with a schedule, e.g. every 15 minutes:
``prefect deploy services/rollout_flow.py:rollout_tick --name tick --pool agency``
``--cron '*/15 * * * *'``.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from agency.settings import get_settings
from services.rollout import tick

FLOW_NAME = "rollout_tick"
ENTRYPOINT = "services/rollout_flow.py:rollout_tick"


@flow(name=FLOW_NAME, log_prints=False, retries=0)
def rollout_tick() -> dict[str, int]:
    """Continue or halt each running canary that has its runs; returns counts by outcome."""
    decided = tick(get_settings(), actor="rollout_tick")
    logger = get_run_logger()
    for view in decided:
        logger.info("rollout %s of %s: %s", view.id, view.workflow, view.status)
    return {
        "continued": sum(1 for v in decided if v.status == "done"),
        "halted": sum(1 for v in decided if v.status == "halted"),
    }


__all__ = ["ENTRYPOINT", "FLOW_NAME", "rollout_tick"]
