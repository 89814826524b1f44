"""The ``notifications_sweep`` Prefect flow: one pass of :func:`services.notifications.sweep`.

``agency up`` (and the install job of the compose and Kubernetes manifests) deploys it as
``notifications_sweep/every-minute`` on the platform's work pool; see
:func:`cli.stack.install_notifications_sweep`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from agency.settings import get_settings
from services.notifications.sweep import sweep

FLOW_NAME = "notifications_sweep"
ENTRYPOINT = "services/notifications/flow.py:notifications_sweep"


@flow(name=FLOW_NAME, log_prints=False, retries=0)
def notifications_sweep() -> dict[str, object]:
    """Record new incidents (failed runs, waiting approvals, late runs) from the Prefect API and
    deliver pending notifications and due digests; returns counts (never an address)."""
    report = sweep(get_settings())
    logger = get_run_logger()
    for error in report.delivery.errors:
        logger.warning(error)
    summary = report.summary()
    logger.info("notifications sweep: %s", summary)
    return summary


__all__ = ["ENTRYPOINT", "FLOW_NAME", "notifications_sweep"]
