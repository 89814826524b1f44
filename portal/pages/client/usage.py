"""Usage: runs and LLM tokens / cost per workflow per month, as a chart and a table."""

from __future__ import annotations

import streamlit as st

from portal.components import acting_client, friendly_errors, principal, settings
from services import usage

st.title("Usage")
with friendly_errors():
    rows = usage.usage_by_month(settings(), principal(), client=acting_client())
    if not rows:
        st.info("No usage recorded yet.")
    else:
        table = [
            {
                "month": r.month,
                "workflow": r.workflow or "(none)",
                "runs": r.runs,
                "LLM tokens": r.tokens,
                "cost (USD)": None if r.cost_usd is None else round(r.cost_usd, 4),
            }
            for r in rows
        ]
        st.bar_chart(table, x="month", y="LLM tokens", color="workflow", stack=True)
        st.dataframe(table, hide_index=True)
        total = sum(r.cost_usd or 0.0 for r in rows)
        st.metric("LLM cost over the period", f"${total:,.2f}")
