"""The client's chains (``this workflow runs after that one``), each removable."""

from __future__ import annotations

import streamlit as st

from agency.settings import Settings
from services.auth import Principal
from services.chains import chains_for, remove_chain_for


def chain_list(
    settings: Settings, principal: Principal, titles: dict[str, str], client: str | None = None
) -> None:
    """A "Chains" section: one line per chain with a Remove button (nothing when none)."""
    views = chains_for(settings, principal, client)
    if not views:
        return
    st.subheader("Chains")
    for view in views:
        up, down = (
            titles.get(view.upstream, view.upstream),
            titles.get(view.downstream, view.downstream),
        )
        left, right = st.columns([5, 1])
        left.markdown(f"**{down}** runs after each completed run of **{up}**")
        if right.button("Remove", key=f"chain.remove.{view.upstream}.{view.downstream}"):
            remove_chain_for(settings, principal, view.upstream, view.downstream, client)
            st.rerun()
