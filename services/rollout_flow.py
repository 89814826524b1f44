"""The ``rollout_tick`` Prefect flow: evaluate every running canary (see ``services.rollout``).

``agency up`` and the platform's install job deploy it (:func:`install_rollout_tick`) as
``rollout_tick/every-15-minutes`` on the platform's work pool.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from agency.settings import Settings, get_settings
from services.rollout import tick

FLOW_NAME = "rollout_tick"
ENTRYPOINT = "services/rollout_flow.py:rollout_tick"
DEPLOYMENT = "every-15-minutes"
EVERY_SECONDS = 15 * 60


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


def install_rollout_tick(settings: Settings | None = None) -> str:
    """Create or update ``rollout_tick/every-15-minutes`` on the platform's work pool, one pass
    at a time; idempotent. Returns the deployment's id."""
    from prefect import Flow
    from prefect.schedules import Interval

    settings = settings or get_settings()
    source = Flow.from_source(source=str(settings.project_dir), entrypoint=ENTRYPOINT)
    deployment_id = source.deploy(  # type: ignore[union-attr]
        name=DEPLOYMENT,
        work_pool_name=settings.work_pool,
        build=False,
        push=False,
        schedules=[Interval(EVERY_SECONDS)],
        concurrency_limit=1,  # two passes at once would both decide the same canary
        tags=["platform"],
        description="Continues or halts each running canary once it has its runs.",
        print_next_steps=False,
        ignore_warnings=True,
    )
    return str(deployment_id)


__all__ = ["DEPLOYMENT", "ENTRYPOINT", "FLOW_NAME", "install_rollout_tick", "rollout_tick"]
