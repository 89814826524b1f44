"""Sign out: the audit log records it and the session forgets the user."""

from __future__ import annotations

import streamlit as st

from portal.components import current_principal, friendly_errors, settings
from portal.components.session import ACTING_CLIENT_KEY, FLASH_KEY, PRINCIPAL_KEY
from services.auth import sign_out

who = current_principal()
if who is not None:
    with friendly_errors():
        sign_out(settings(), who)
st.session_state.pop(PRINCIPAL_KEY, None)
st.session_state.pop(ACTING_CLIENT_KEY, None)
st.session_state[FLASH_KEY] = "You are signed out."
st.rerun()
