"""Your notifications: switch each kind (failed run, waiting approval, late run, broken
connection) on or off for yourself. Client users and agency staff alike."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from services.notifications import KINDS, get_preferences, set_preferences

who = principal()
st.title("Notifications")
st.caption(
    f"We email {who.email} when one of these happens. At most one email per event; more than "
    f"{settings().notify_digest_after} in an hour arrive together as one digest."
)
with friendly_errors():
    current = get_preferences(settings(), who)
    with st.form("notifications"):
        chosen = {
            kind.slug: st.toggle(
                kind.title,
                value=current[kind.slug],
                key=f"notifications.{kind.slug}",
                help=kind.description,
            )
            for kind in KINDS.values()
        }
        submitted = st.form_submit_button("Save", type="primary")
    if submitted:
        set_preferences(settings(), who, chosen)
        st.success("Your notification choices are saved.")
