"""What runs record on the platform DB as they go: LLM token usage per call (costs per client and
workflow) and the egress guard's refusals (audit log)."""

from __future__ import annotations

from sqlalchemy import select

from agency.db.engine import session_scope
from agency.db.models import AuditLog, Client, LlmUsage
from agency.egress.policy import EgressRefused


def record_llm_usage(
    url: str,
    *,
    client: str,
    workflow: str | None,
    flow_run_id: str | None,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    total_tokens: int,
    cost_usd: float | None = None,
) -> None:
    """Insert one ``llm_usage`` row on the platform DB at ``url`` and commit it.

    ``cost_usd`` is None when the model has no price in the price table.

    Example::

        record_llm_usage(settings.platform_database_url, client="acme", workflow="lead-intake",
                         flow_run_id=None, model="gpt-4o-mini", prompt_tokens=120,
                         completion_tokens=30, total_tokens=150, cost_usd=0.000036)
    """
    with session_scope(url) as session:
        session.add(
            LlmUsage(
                client=client,
                workflow=workflow,
                flow_run_id=flow_run_id,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=total_tokens,
                cost_usd=cost_usd,
            )
        )


def record_egress_refusal(
    url: str, *, client: str, workflow: str | None, flow_run_id: str | None, error: EgressRefused
) -> None:
    """Append an ``egress.refused`` audit row for a run of ``client`` that the guard stopped.

    The actor is the workflow (``workflow:<slug>``); ``detail`` names the host and the reason.
    """
    with session_scope(url) as session:
        client_id = session.scalar(select(Client.id).where(Client.slug == client))
        session.add(
            AuditLog(
                actor=f"workflow:{workflow or 'unknown'}",
                action="egress.refused",
                target=error.host[:200],
                client_id=client_id,
                detail={
                    "client": client,
                    "workflow": workflow,
                    "flow_run_id": flow_run_id,
                    "reason": error.reason,
                },
            )
        )
