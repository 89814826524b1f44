"""The recent webhook deliveries of one workflow: when each came, the run that handled it, and
whether it ran alone or in a batch (adaptive batching groups events while a burst lasts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

#: a delivery's mode in the client's words
MODE_WORDS = {"alone": "its own run", "batch": "in a batch", "waiting": "waiting"}
OUTCOME_WORDS = {"done": "done", "failed": "failed"}


def delivery_list(deliveries: Sequence[Any]) -> None:
    """A table of the deliveries (newest first), or a line saying none came yet."""
    if not deliveries:
        st.caption("No webhook has arrived yet.")
        return
    st.markdown("**Recent deliveries**")
    st.dataframe(
        [
            {
                "received": f"{d.received_at:%Y-%m-%d %H:%M:%S}",
                "ran": MODE_WORDS.get(d.mode, d.mode),
                "run": (d.flow_run_id or "")[:8],
                "outcome": OUTCOME_WORDS.get(d.outcome or "", "") or d.status,
                "problem": d.outcome_error or "",
            }
            for d in deliveries
        ],
        hide_index=True,
    )
