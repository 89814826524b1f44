"""Change your own password: the current one and the new one twice. An invited user sees only
this page ("Set your password") until they replace their temporary password."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from portal.components.session import GO_HOME_KEY, NOTICE_KEY, PRINCIPAL_KEY
from services.auth import MIN_PASSWORD_LENGTH, change_password

who = principal()
first = who.must_change_password
st.title("Set your password" if first else "Change password")
if first:
    st.info("You signed in with a temporary password. Choose your own to continue.")
with st.form("password", clear_on_submit=True):
    current = st.text_input(
        "Temporary password" if first else "Current password",
        type="password",
        key="password.current",
    )
    new = st.text_input(
        "New password",
        type="password",
        key="password.new",
        help=f"At least {MIN_PASSWORD_LENGTH} characters.",
    )
    again = st.text_input("New password again", type="password", key="password.again")
    label = "Set password" if first else "Change password"
    submitted = st.form_submit_button(label, type="primary")
if submitted:
    with friendly_errors():
        st.session_state[PRINCIPAL_KEY] = change_password(settings(), who, current, new, again)
        if first:
            st.session_state[NOTICE_KEY] = "Your password is set."
            st.session_state[GO_HOME_KEY] = True
            st.rerun()
        st.success("Your password is changed. Your other sessions are signed out.")
