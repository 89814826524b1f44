"""Agency: LLM tokens and cost per client."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from services import admin

st.title("Costs")
days = st.selectbox("Period", [7, 31, 90, 365], index=1, format_func=lambda d: f"last {d} days")
with friendly_errors():
    costs = admin.client_costs(settings(), principal(), days)
    if not costs:
        st.info("No LLM usage in this period.")
    else:
        table = [
            {"client": c.client, "LLM tokens": c.tokens, "cost (USD)": round(c.cost_usd or 0, 4)}
            for c in costs
        ]
        st.bar_chart(table, x="client", y="cost (USD)")
        st.dataframe(table, hide_index=True)
