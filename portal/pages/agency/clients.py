"""Agency: the clients list, onboarding a client, inviting a client user (temporary password),
suspending, resuming and offboarding a client."""

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

st.subheader("Suspend, resume or offboard")
with st.form("client.lifecycle"):
    target = st.selectbox("Client ", [c.slug for c in clients] if clients else [])
    st.caption(
        "Suspending pauses the client's schedules and refuses its portal users, API keys and "
        "webhooks at once. Offboarding saves the client's data to a file, then deletes the "
        "client everywhere; type the client's slug to confirm it."
    )
    confirm = st.text_input("Type the slug to offboard")
    act_suspend, act_resume, act_offboard = st.columns(3)
    if act_suspend.form_submit_button("Suspend"):
        with friendly_errors():
            view = admin.suspend(s, who, target or "")
            st.session_state["clients.notice"] = f"Client {view.slug} is {view.status}."
            st.rerun()
    if act_resume.form_submit_button("Resume"):
        with friendly_errors():
            view = admin.resume(s, who, target or "")
            st.session_state["clients.notice"] = f"Client {view.slug} is {view.status}."
            st.rerun()
    if act_offboard.form_submit_button("Offboard"):
        if confirm.strip() != (target or ""):
            st.error("Type the client's slug exactly to confirm offboarding.")
        else:
            with friendly_errors():
                done = admin.offboard(s, who, target or "")
                st.session_state["clients.notice"] = (
                    f"Client {done.client} offboarded: {done.runs} run(s) and "
                    f"{done.secrets} secret(s) deleted; its data is in {done.export}."
                )
                st.rerun()
