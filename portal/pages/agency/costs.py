"""Agency: LLM tokens and cost per client, and every client's usage of a month for invoicing
(runs by workflow and outcome, tokens, cost) with its CSV download."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from portal.components.session import send_file
from services import admin, usage

LABELS = {"llm_tokens": "LLM tokens", "cost_usd": "cost (USD)"}


st.title("Costs")
s, who = settings(), principal()
days = st.selectbox("Period", [7, 31, 90, 365], index=1, format_func=lambda d: f"last {d} days")
with friendly_errors():
    costs = admin.client_costs(s, who, days)
    if not costs:
        st.info("No LLM usage in this period.")
    else:
        table = [
            {"client": c.client, "LLM tokens": c.tokens, "cost (USD)": round(c.cost_usd or 0, 4)}
            for c in costs
        ]
        st.bar_chart(table, x="client", y="cost (USD)")
        st.dataframe(table, hide_index=True)

st.subheader("Usage for invoicing")
st.caption("Every client's runs by workflow and outcome, LLM tokens and cost in one month.")
month = st.selectbox("Month", usage.recent_months(), key="costs.month")
shown = st.session_state.get("costs.usage_lines")
with friendly_errors():
    # counted from every run of the month: only on request, then kept for this month
    if st.button("Show usage of all clients", key="costs.show"):
        lines = usage.month_usage(s, who, month, all_clients=True)
        shown = st.session_state["costs.usage_lines"] = (month, lines)
    if shown is not None and shown[0] == month:
        records = usage.usage_records(shown[1])
        if not records:
            st.info("No runs or LLM usage in this month.")
        else:
            st.dataframe(
                [{LABELS.get(k, k): v for k, v in r.items()} for r in records],
                hide_index=True,
                key="costs.usage",
            )
            if st.button("Download CSV (all clients)", key="costs.csv"):
                # not st.download_button: its /media/ URL would serve the file without a session
                send_file(usage.export_name(month, None, "csv"), usage.usage_csv(shown[1]).encode())
