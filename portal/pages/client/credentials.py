"""Credentials: forms generated from the credential kinds; stored values are never shown again."""

from __future__ import annotations

import streamlit as st

from blocks.kinds import OAUTH_KINDS
from blocks.words import kind_words
from portal.components import acting_client, friendly_errors, model_form, principal, settings
from portal.components.connect import badge, connected_accounts
from services import workspace
from services.connection_tests import TESTABLE_KINDS, check_connection
from services.connections import list_connections

st.title("Credentials")
s, who, client = settings(), principal(), acting_client()

with friendly_errors():
    connected_accounts(s, who, client)

st.subheader("Stored")
with friendly_errors():
    stored = [c for c in workspace.credentials(s, who, client) if c.kind not in OAUTH_KINDS]
    health = {(c.kind, c.name): c for c in list_connections(s, who, client)}
    if not stored:
        st.info("No credentials stored yet.")
    for cred in stored:
        row = st.columns([2, 2, 3, 1, 1])
        row[0].markdown(f"**{kind_words(cred.kind).title}**")
        row[1].write(cred.name)
        when = f"{cred.set_on:%Y-%m-%d %H:%M} UTC" if cred.set_on else "unknown date"
        checked = health.get((cred.kind, cred.name))
        row[2].caption(f"set on {when} · {cred.store} store")
        if checked is not None:
            row[2].markdown(badge(checked.status))
            if checked.detail and checked.status != "connected":
                row[2].caption(checked.detail)
        if cred.kind in TESTABLE_KINDS and cred.kind != "http_auth":
            if row[3].button("Test", key=f"test.{cred.kind}.{cred.name}"):
                with friendly_errors():
                    result = check_connection(s, who, cred.kind, name=cred.name, client=client)
                    (st.success if result.ok else st.error)(result.message)
        if row[4].button("Delete", key=f"delete.{cred.kind}.{cred.name}"):
            with friendly_errors():
                workspace.delete_credential(s, who, cred.kind, cred.name, client)
                st.session_state["credentials.notice"] = (
                    f"Deleted {kind_words(cred.kind).title} '{cred.name}'."
                )
                st.rerun()
notice = st.session_state.pop("credentials.notice", None)
if notice:
    st.success(notice)

st.subheader("Add or replace")
kinds = {k: m for k, m in workspace.credential_kinds().items() if k not in OAUTH_KINDS}
kind = st.selectbox(
    "What to add",
    sorted(kinds, key=lambda k: kind_words(k).title),
    format_func=lambda k: kind_words(k).title,
    key="credential.kind",
)
model = kinds[kind]
words = kind_words(kind)
st.caption(f"{words.what} {words.help}")
generation = st.session_state.get("credentials.form", 0)
with st.form(f"credential.{kind}.{generation}"):
    name = st.text_input(
        "Name",
        value="default",
        help="Workflows pick credentials by name.",
        key=f"credential.name.{generation}",
    )
    data = model_form(model, key=f"credential.{kind}.{generation}")
    probe = None
    if kind == "http_auth":
        probe = st.text_input("Test address", help="A page of your API to try the credential on.")
    save = st.form_submit_button("Save", type="primary")
    test = st.form_submit_button("Test connection", disabled=kind not in TESTABLE_KINDS)
if save:
    with friendly_errors():
        workspace.save_credential(s, who, kind, name, data, client)
        # a fresh form (new widget keys): entered values must not linger once stored
        st.session_state["credentials.form"] = generation + 1
        st.session_state["credentials.notice"] = (
            f"Saved {words.title} '{name}'. The values are stored securely and will not be "
            "shown again."
        )
        st.rerun()
if test:
    with friendly_errors():
        result = check_connection(s, who, kind, data=data, probe_url=probe, client=client)
        (st.success if result.ok else st.error)(result.message)
