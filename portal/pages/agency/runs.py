"""Agency: recent runs of every client, failed and waiting first, each failure with the reason
its client reads and the raw state message behind it."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from services import admin

st.title("All runs")
with friendly_errors():
    listed = admin.runs_failures_first(settings(), principal())
    failed = sum(r.failed for r in listed)
    st.metric("Failed among recent runs", failed)
    st.dataframe(
        [
            {
                "client": r.client,
                "workflow": r.workflow,
                "state": r.state_name,
                "reason (as the client reads it)": r.reason or "",
                "message": r.detail or "",
                "trigger": r.trigger,
                "started": f"{r.started:%Y-%m-%d %H:%M}" if r.started else "",
                "run": r.name,
                "id": r.id,
            }
            for r in listed
        ],
        hide_index=True,
    )
