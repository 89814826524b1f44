"""Agency: the OAuth apps clients connect their accounts with (one per provider)."""

from __future__ import annotations

import streamlit as st

from blocks.oauth import BUILTIN_PROVIDERS
from portal.components import friendly_errors, principal, settings
from services.connections import apps, redirect_uri, register_app, remove_app

st.title("Account connections")
s, who = settings(), principal()
st.caption(
    "Register the agency's app at each provider once; clients then press *Connect* on their "
    f"Credentials page. Allow this redirect URI at the provider: `{redirect_uri(s)}`"
)

st.subheader("Registered apps")
with friendly_errors():
    registered = apps(s)
    if not registered:
        st.info("No app registered yet.")
    for app in registered:
        row = st.columns([2, 3, 4, 1])
        row[0].markdown(f"**{app.title}**")
        row[1].caption(f"client id {app.client_id}")
        row[2].caption(app.scopes or "no scopes")
        if row[3].button("Remove", key=f"app.remove.{app.slug}"):
            with friendly_errors():
                remove_app(s, who, app.slug)
                st.rerun()

st.subheader("Register or replace an app")
choice = st.selectbox(
    "Provider",
    [*BUILTIN_PROVIDERS, "other"],
    format_func=lambda p: (
        BUILTIN_PROVIDERS[p].title if p in BUILTIN_PROVIDERS else "Other (OAuth2)"
    ),
)
with st.form(f"app.{choice}", clear_on_submit=True):
    slug = choice if choice != "other" else st.text_input("Name", help="e.g. acme-crm")
    client_id = st.text_input("Client id")
    client_secret = st.text_input("Client secret", type="password")
    custom = choice == "other"
    with st.expander("Endpoints", expanded=custom):
        authorize_url = st.text_input("Authorize URL")
        token_url = st.text_input("Token URL")
        revoke_url = st.text_input("Revoke URL")
        userinfo_url = st.text_input("Identity URL")
        identity_field = st.text_input("Identity field", help="e.g. email")
        api_base_url = st.text_input("API base URL")
        scopes = st.text_input("Scopes", help="Space-separated, for Other providers.")
    save = st.form_submit_button("Save", type="primary")
if save:
    overrides = {
        "authorize_url": authorize_url,
        "token_url": token_url,
        "revoke_url": revoke_url,
        "userinfo_url": userinfo_url,
        "identity_field": identity_field,
        "api_base_url": api_base_url,
        "scopes": {"default": scopes.split()} if scopes.strip() else None,
    }
    with friendly_errors():
        view = register_app(s, who, slug or "", client_id, client_secret, overrides)
        st.success(f"{view.title} registered. The secret is stored securely.")
