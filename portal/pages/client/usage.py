"""Usage: for one month, runs by workflow and outcome with LLM tokens and cost (the invoicing
figures, downloadable as CSV over the session), and LLM tokens per month as a chart."""

from __future__ import annotations

import streamlit as st

from portal.components import acting_client, friendly_errors, principal, settings
from portal.components.session import send_file
from services import usage

LABELS = {"llm_tokens": "LLM tokens", "cost_usd": "cost (USD)"}


st.title("Usage")
s, who, client = settings(), principal(), acting_client()
month = st.selectbox("Month", usage.recent_months(), key="usage.month")
with friendly_errors():
    lines = usage.month_usage(s, who, month, client=client)
    records = usage.usage_records(lines)
    if not records:
        st.info("No usage recorded in this month.")
    else:
        st.dataframe(
            [{LABELS.get(k, k): v for k, v in r.items() if k != "client"} for r in records],
            hide_index=True,
        )
        runs_col, cost_col = st.columns(2)
        runs_col.metric("Runs this month", sum(r["runs"] for r in records))
        cost_col.metric("LLM cost this month", f"${sum(r['cost_usd'] or 0 for r in records):,.2f}")
        if st.button("Download CSV", key="usage.csv"):
            # not st.download_button: its /media/ URL would serve the file without a session
            send_file(*usage.export_usage(s, who, month, client=client))
    tokens = usage.tokens_by_month(s, who, client=client)
    if tokens:
        st.subheader("LLM tokens per month")
        st.bar_chart(
            [{"month": m, "LLM tokens": t} for m, t in tokens.items()], x="month", y="LLM tokens"
        )
