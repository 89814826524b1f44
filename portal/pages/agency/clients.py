"""Agency: the clients list, onboarding a client, inviting a client user (temporary password)."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from services import admin

st.title("Clients")
s, who = settings(), principal()
with friendly_errors():
    clients = admin.list_clients(s, who)
    if clients:
        st.dataframe(
            [
                {
                    "client": c.slug,
                    "name": c.name,
                    "time zone": c.timezone,
                    "status": c.status,
                    "users": c.users,
                    "active workflows": c.active_workflows,
                }
                for c in clients
            ],
            hide_index=True,
        )
    else:
        st.info("No clients yet.")

notice = st.session_state.pop("clients.notice", None)
if notice:
    st.success(notice)
new, invite = st.columns(2)
with new, st.form("client.create"):
    st.subheader("New client")
    slug = st.text_input("Slug", help="Lowercase id used in URLs, e.g. acme.")
    name = st.text_input("Name")
    timezone = st.text_input("Time zone", value="UTC")
    emails = st.text_input("Contact emails", help="Comma-separated.")
    if st.form_submit_button("Create client", type="primary"):
        with friendly_errors():
            contacts = [e.strip() for e in emails.split(",") if e.strip()]
            view = admin.create_client(s, who, slug.strip(), name.strip(), timezone, contacts)
            st.session_state["clients.notice"] = f"Client {view.slug} created."
            st.rerun()
with invite, st.form("client.invite"):
    st.subheader("Invite a client user")
    client = st.selectbox("Client", [c.slug for c in clients] if clients else [])
    email = st.text_input("Email")
    if st.form_submit_button("Invite"):
        with friendly_errors():
            created = admin.invite(s, who, client or "", email)
            st.success(f"User {created.email} created. Temporary password (shown once):")
            st.code(created.temporary_password, language=None)
