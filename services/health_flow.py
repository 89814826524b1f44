"""The ``credential_health`` Prefect flow: the daily check of every client's credentials.

``agency up`` (and the install job of the compose and Kubernetes manifests) deploys it with a
daily schedule on the platform's work pool; see :func:`cli.stack.install_health_check`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from agency.settings import get_settings
from services.health import check_credentials

FLOW_NAME = "credential_health"
ENTRYPOINT = "services/health_flow.py:credential_health"


@flow(name=FLOW_NAME, log_prints=False, retries=0)
def credential_health(client: str | None = None) -> dict[str, object]:
    """Check every active client's credentials (or ``client``'s), record their health and email
    each new breakage once; returns counts by status (never a detail or a secret)."""
    report = check_credentials(get_settings(), client)
    logger = get_run_logger()
    for result in report.results:
        if result.status != "connected" or result.transient:
            logger.info(
                "%s %s/%s: %s%s",
                result.client,
                result.kind,
                result.name,
                result.status,
                " (not checked: provider unreachable)" if result.transient else "",
            )
    for error in report.notice_errors:
        logger.warning(error)
    summary = report.summary()
    logger.info("checked %s credential(s) in %.1f s", summary["checked"], report.seconds)
    return summary


__all__ = ["ENTRYPOINT", "FLOW_NAME", "credential_health"]
