"""Approvals: pending approval requests with their message and data; the answer resumes the run."""

from __future__ import annotations

import streamlit as st

from portal.components import acting_client, friendly_errors, principal, settings
from services import workspace

st.title("Approvals")
s, who, client = settings(), principal(), acting_client()
with friendly_errors():
    pending = workspace.pending_approvals(s, who, client)
    notice = st.session_state.pop("approvals.notice", None)
    if notice:
        st.success(notice)
    if not pending:
        st.info("No approval requests.")
    for req in pending:
        with st.container(border=True):
            st.subheader(f"{req.workflow} · {req.node}")
            st.write(req.message)
            if req.data:
                st.json(req.data, expanded=False)
            st.caption(
                f"Requested {req.requested_at:%Y-%m-%d %H:%M} UTC"
                + (f" · expires {req.expires_at:%Y-%m-%d %H:%M} UTC" if req.expires_at else "")
            )
            key = f"approvals.{req.flow_run_id}"
            choice = None
            text = None
            if req.kind == "choice" and req.choices:
                choice = st.radio("Choice", list(req.choices), key=f"{key}.choice")
            elif req.kind == "text":
                text = st.text_area("Answer", key=f"{key}.text")
            comment = st.text_input("Comment", key=f"{key}.comment")
            approve, reject = st.columns(2)
            if approve.button("Approve", type="primary", key=f"{key}.approve"):
                workspace.answer_approval(
                    s,
                    who,
                    req.flow_run_id,
                    approved=True,
                    text=text,
                    choice=choice,
                    comment=comment or None,
                    client=client,
                )
                st.session_state["approvals.notice"] = "Approved: the run continues."
                st.rerun()
            if reject.button("Reject", key=f"{key}.reject"):
                workspace.answer_approval(
                    s, who, req.flow_run_id, approved=False, comment=comment or None, client=client
                )
                st.session_state["approvals.notice"] = "Rejected."
                st.rerun()
