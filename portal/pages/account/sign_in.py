"""Sign in with email and password (argon2 in the platform DB; lockout after failures)."""

from __future__ import annotations

import streamlit as st

from agency.errors import AuthFailed
from portal.components import friendly_errors, settings
from portal.components.session import FLASH_KEY, PRINCIPAL_KEY
from services import authenticate

st.title("Sign in")
flash = st.session_state.pop(FLASH_KEY, None)
if flash:
    st.info(flash)
with st.form("sign_in"):
    email = st.text_input("Email", key="sign_in.email")
    password = st.text_input("Password", type="password", key="sign_in.password")
    submitted = st.form_submit_button("Sign in", type="primary")
if submitted:
    with friendly_errors():
        try:
            st.session_state[PRINCIPAL_KEY] = authenticate(settings(), email, password)
        except AuthFailed as exc:
            st.error(str(exc))
        else:
            st.rerun()
st.caption(
    "Forgot your password or locked out? Ask your agency contact for a new temporary password."
)
