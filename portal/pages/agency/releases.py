"""Agency: which release each client runs, rollouts in progress with their figures, and a
per-client roll-back (release and settings of an earlier activation version)."""

from __future__ import annotations

import streamlit as st

from portal.components import friendly_errors, principal, settings
from services.releases import PinView, pins
from services.rollout import rollout_status
from services.workspace import roll_back

st.title("Releases")
s, who = settings(), principal()
st.caption(
    "Each client runs the release its activation is pinned to. Make releases with "
    "`agency release create`, move clients with `agency rollout`."
)

current: list[PinView] = []
with friendly_errors():
    current = pins(s, who)
    rollouts = rollout_status(s)
    st.subheader("Clients")
    if not current:
        st.info("No activation yet.")
    else:
        st.dataframe(
            [
                {
                    "client": p.client,
                    "workflow": p.workflow,
                    "release": p.release or "-",
                    "version": p.workflow_version or "-",
                    "activation version": p.version,
                    "status": p.status,
                }
                for p in current
            ],
            hide_index=True,
        )
    st.subheader("Rollouts")
    if not rollouts:
        st.info("No rollout yet.")
    else:
        st.dataframe(
            [
                {
                    "id": r.id,
                    "workflow": r.workflow,
                    "mode": r.mode + (f" {r.canary_percent}%" if r.canary_percent else ""),
                    "from": r.from_release or "-",
                    "to": r.to_release,
                    "status": r.status,
                    "clients": ", ".join(r.clients),
                    "canary failed/runs": f"{r.detail.get('canary_failed', 0)}/"
                    f"{r.detail.get('canary_runs', 0)}",
                    "previous failed/runs": f"{r.detail.get('baseline_failed', 0)}/"
                    f"{r.detail.get('baseline_runs', 0)}",
                }
                for r in rollouts[:20]
            ],
            hide_index=True,
        )

rollable = [p for p in current if len(p.versions) > 1]
st.subheader("Roll a client back")
if not rollable:
    st.info("No activation has an earlier version.")
else:
    chosen = st.selectbox(
        "Activation",
        rollable,
        format_func=lambda p: f"{p.client} / {p.workflow} (v{p.version}, {p.release})",
    )
    earlier = [v for v in chosen.versions if v != chosen.version]
    version = st.selectbox("Back to version", sorted(earlier, reverse=True))
    if st.button("Roll back", type="primary"):
        with friendly_errors():
            view = roll_back(s, who, chosen.workflow, int(version), chosen.client)
            st.success(
                f"{chosen.client} / {chosen.workflow} is back on version {version}'s release "
                f"and settings (now v{view.version}, release {view.release})."
            )
