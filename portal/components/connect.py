"""The Credentials page's *Connected accounts*: a Connect button per provider app, the account
each connection is signed in as, its health badge, Reconnect and Disconnect.

*Connect* is a link that opens the provider in a new tab (through the gateway's
``/oauth/start``); the link is made once per provider and session and renewed when used or
close to its ten minutes. A fragment polls the attempts every few seconds and shows how each
ended, here where the user started.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from agency.db import utcnow
from agency.settings import Settings
from services.auth import Principal
from services.connections import (
    AppView,
    ConnectionView,
    apps,
    attempt_outcome,
    list_connections,
    revoke_connection,
    start_connect,
)

_LINKS = "connect.links"  # provider slug -> (attempt id, url, made at)
_RENEW_AFTER = timedelta(minutes=8)
BADGES = {
    "connected": ":green-badge[:material/check_circle: Connected]",
    "expiring": ":orange-badge[:material/schedule: Expiring soon]",
    "needs_reconnect": ":red-badge[:material/link_off: Needs reconnecting]",
    "failing": ":red-badge[:material/error: Failing]",
}


def badge(status: str) -> str:
    """The badge markdown of a health status."""
    return BADGES.get(status, status)


def _link(s: Settings, who: Principal, app: AppView, client: str | None) -> str:
    links: dict[str, tuple[int, str, object]] = st.session_state.setdefault(_LINKS, {})
    held = links.get(app.slug)
    if held is None or utcnow() - held[2] > _RENEW_AFTER:  # type: ignore[operator]
        attempt = start_connect(s, who, app.slug, "default", client)
        held = (attempt.id, attempt.url, utcnow())
        links[app.slug] = held
    return held[1]


@st.fragment(run_every=timedelta(seconds=2))
def _watch(s: Settings, who: Principal) -> None:
    """Show how each started attempt ended; renew its link and refresh the page when it did."""
    links: dict[str, tuple[int, str, object]] = st.session_state.get(_LINKS, {})
    for slug, (attempt_id, _, _) in list(links.items()):
        outcome = attempt_outcome(s, who, attempt_id)
        if outcome.done:
            links.pop(slug, None)
            st.session_state["connect.notice"] = (outcome.ok, outcome.message)
            st.rerun(scope="app")


def connected_accounts(s: Settings, who: Principal, client: str | None) -> None:
    """The *Connected accounts* section."""
    st.subheader("Connected accounts")
    notice = st.session_state.pop("connect.notice", None)
    if notice:
        (st.success if notice[0] else st.error)(notice[1])
    registered = apps(s)
    if not registered:
        st.info("Your agency has not set up any account connections yet.")
        return
    health: dict[tuple[str, str], ConnectionView] = {
        (c.kind, c.name): c for c in list_connections(s, who, client)
    }
    for app in registered:
        current = health.get((app.kind, "default"))
        row = st.columns([2, 4, 2, 2])
        row[0].markdown(f"**{app.title}**")
        if current is None:
            row[1].caption("Not connected")
            row[2].link_button("Connect", _link(s, who, app, client), type="primary")
            continue
        account = current.account or "your account"
        row[1].markdown(f"Connected as **{account}** {badge(current.status)}")
        if current.detail and current.status != "connected":
            row[1].caption(current.detail)
        label = "Reconnect" if current.status != "connected" else "Connect again"
        row[2].link_button(label, _link(s, who, app, client))
        if row[3].button("Disconnect", key=f"disconnect.{app.kind}"):
            revoked = revoke_connection(s, who, app.kind, "default", client)
            st.session_state["connect.notice"] = (
                True,
                f"{app.title} disconnected"
                + (" and access revoked." if revoked else "; its tokens were deleted."),
            )
            st.rerun()
    _watch(s, who)
