"""Agency: the demo mail catcher's inbox — every email the demo client's workflows sent
(``agency demo``; nothing here is relayed anywhere)."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from services.demo import demo_inbox

st.title("Demo inbox")
st.caption(
    "Emails the demo client's workflows sent to the demo mail catcher (SMTP on loopback). "
    "Nothing here left this machine."
)
with friendly_errors():
    messages = demo_inbox(settings(), principal())
    if not messages:
        st.info("No email yet. `agency demo` creates the demo; its first runs send one each.")
    for message in messages:
        with st.expander(f"{message.subject} — to {message.recipients} — {message.date}"):
            st.caption(f"From {message.sender}")
            st.text(message.text)
