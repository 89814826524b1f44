"""The ``long_waits`` Prefect flow: every minute, apply approval deadlines and mend chains.

Suspended runs have no process that could notice a deadline, so this check does it: each
approval request past its deadline is answered ``timed_out`` (the resumed run applies its
``on_timeout`` policy), and chain automations are reconciled with their platform records.
``agency up`` deploys it (:func:`install_waits_check`) on the platform's work pool.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from agency.settings import Settings, get_settings
from services.approvals import expire_approvals
from services.chains import reconcile_chains

FLOW_NAME = "long_waits"
ENTRYPOINT = "services/waits_flow.py:long_waits"
DEPLOYMENT = "every-minute"


@flow(name=FLOW_NAME, log_prints=False, retries=0)
def long_waits() -> dict[str, int]:
    """One pass: expired approvals answered, chains rebuilt / dropped; returns the counts."""
    settings = get_settings()
    expired = expire_approvals(settings)
    chains = reconcile_chains(settings)
    summary = {
        "approvals_expired": expired,
        "chains_rebuilt": len(chains.rebuilt),
        "chains_dropped": len(chains.dropped),
        "chain_automations_deleted": chains.deleted_automations,
    }
    get_run_logger().info("long waits: %s", summary)
    return summary


def install_waits_check(settings: Settings | None = None) -> str:
    """Create or update ``long_waits/every-minute`` on the platform's work pool; idempotent.
    Returns the deployment's id."""
    from prefect import Flow
    from prefect.schedules import Interval

    settings = settings or get_settings()
    source = Flow.from_source(source=str(settings.project_dir), entrypoint=ENTRYPOINT)
    deployment_id = source.deploy(  # type: ignore[union-attr]
        name=DEPLOYMENT,
        work_pool_name=settings.work_pool,
        build=False,
        push=False,
        schedules=[Interval(60)],
        tags=["platform"],
        description="Applies approval deadlines of suspended runs; rebuilds missing chains.",
        print_next_steps=False,
        ignore_warnings=True,
    )
    return str(deployment_id)
