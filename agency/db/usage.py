"""LLM token usage, recorded per call so costs can be reported per client and workflow."""

from __future__ import annotations

from agency.db.engine import session_scope
from agency.db.models import LlmUsage


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
