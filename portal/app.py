"""The portal's entry script and router: ``st.navigation`` builds the pages of the signed-in
user's role (sign-in only when nobody is signed in; only "Set your password" for an invited user
who has not replaced their temporary password). Every run re-checks the session against the
platform DB (``check_session``). Run with ``agency portal``."""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from portal.components import current_principal, friendly_errors, settings
from portal.components.session import ACTING_CLIENT_KEY, GO_HOME_KEY, NOTICE_KEY
from services import admin

PAGES = Path(__file__).resolve().parent / "pages"


def _page(path: str, title: str, icon: str, default: bool = False) -> st.Page:
    # URL path = folder + file, so the agency's and the client's "runs" pages never collide
    url = path.removesuffix(".py").replace("/", "-").replace("_", "-")
    return st.Page(
        PAGES / path, title=title, icon=f":material/{icon}:", default=default, url_path=url
    )


def _client_pages(default: bool) -> list[st.Page]:
    return [
        _page("client/catalog.py", "Catalog", "apps", default=default),
        _page("client/credentials.py", "Credentials", "key"),
        _page("client/workflows.py", "Workflows", "tune"),
        _page("client/runs.py", "Runs", "play_circle"),
        _page("client/approvals.py", "Approvals", "task_alt"),
        _page("client/usage.py", "Usage", "bar_chart"),
    ]


def _agency_client_picker() -> None:
    """Agency staff choose which client the workspace pages act for."""
    with friendly_errors():
        slugs = [c.slug for c in admin.list_clients(settings(), who)]
        if not slugs:
            st.sidebar.info("No clients yet: create one under Clients.")
            return
        current = st.session_state.get(ACTING_CLIENT_KEY)
        index = slugs.index(current) if current in slugs else 0
        st.session_state[ACTING_CLIENT_KEY] = st.sidebar.selectbox(
            "Acting for client", slugs, index=index
        )


st.set_page_config(page_title="Agency portal", page_icon=":material/hub:", layout="wide")
try:
    who = current_principal()
except Exception:  # the platform DB cannot be asked: one sentence, never a traceback
    logging.getLogger("agency.portal").exception("session check failed")
    st.error("Something went wrong on our side. Please try again; we have been notified.")
    st.stop()
home: st.Page | None = None  # the signed-in user's first page
if who is None:
    nav = st.navigation([_page("account/sign_in.py", "Sign in", "login", default=True)])
elif who.must_change_password:
    # an invited user's temporary password only lets them choose their own
    nav = st.navigation(
        [
            _page("account/password.py", "Set your password", "password", default=True),
            _page("account/sign_out.py", "Sign out", "logout"),
        ]
    )
else:
    account = [
        _page("account/password.py", "Change password", "password"),
        _page("account/notifications.py", "Notifications", "notifications"),
        _page("account/sign_out.py", "Sign out", "logout"),
    ]
    if who.is_agency:
        home = _page("agency/clients.py", "Clients", "groups", default=True)
        pages = {
            "Agency": [
                home,
                _page("agency/runs.py", "All runs", "monitoring"),
                _page("agency/costs.py", "Costs", "payments"),
                _page("agency/apps.py", "Account connections", "link"),
                _page("agency/releases.py", "Releases", "deployed_code"),
                _page("agency/inbox.py", "Demo inbox", "inbox"),
            ],
            "Client workspace": _client_pages(default=False),
            "Account": account,
        }
        _agency_client_picker()
    else:
        workspace_pages = _client_pages(default=True)
        home = workspace_pages[0]
        pages = {"Your workspace": workspace_pages, "Account": account}
    st.sidebar.caption(f"Signed in as {who.email}")
    nav = st.navigation(pages)
    if st.session_state.pop(GO_HOME_KEY, False) and home is not None:
        st.switch_page(home)
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.toast(notice)
nav.run()
