"""Runs: this client's runs from Prefect (by the client tag) with state, trigger, logs and
outputs; "Run now" and "Retry". The list refreshes itself while a run is active. An output is
downloaded only after a signed-in click, and only over the session (``send_file``)."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from portal.components import acting_client, friendly_errors, principal, settings
from portal.components.session import send_file
from services import runs, workspace

ICONS = {
    "COMPLETED": "✅",
    "FAILED": "❌",
    "CRASHED": "💥",
    "CANCELLED": "🚫",
    "RUNNING": "🔄",
    "SCHEDULED": "🕒",
    "PENDING": "⏳",
    "PAUSED": "⏸️",
}
PAGE_SIZE = 50


def _duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


st.title("Runs")
s, who, client = settings(), principal(), acting_client()

with friendly_errors():
    active = [a.workflow for a in workspace.activations(s, who, client) if a.status != "inactive"]
    if active:
        left, right = st.columns([3, 1])
        chosen = left.selectbox("Workflow", active, key="runs.workflow")
        if right.button("Run now", type="primary", key="runs.run_now"):
            started = runs.run_now(s, who, chosen, client=client)
            st.session_state["runs.selected"] = started.id
            st.toast(f"Started {started.name}")
    else:
        st.info("Activate a workflow to run it.")


@st.fragment(run_every=timedelta(seconds=3) if st.session_state.get("runs.live") else None)
def run_list() -> None:
    with friendly_errors():
        listed = runs.list_runs(s, who, client=client, limit=PAGE_SIZE)
        live = any(r.active for r in listed)
        if live != st.session_state.get("runs.live", False):
            # the refresh interval is fixed when the fragment is defined: redefine it
            st.session_state["runs.live"] = live
            st.rerun(scope="app")
        if not listed:
            st.info("No runs yet.")
            return
        st.dataframe(
            [
                {
                    "state": f"{ICONS.get(r.state, '')} {r.state_name}",
                    "workflow": r.workflow,
                    "trigger": r.trigger,
                    "started": f"{r.started:%Y-%m-%d %H:%M:%S}" if r.started else "not yet",
                    "duration": _duration(r.duration),
                    "run": r.name,
                }
                for r in listed
            ],
            hide_index=True,
            key="runs.table",
        )
        ids = [r.id for r in listed]
        names = {r.id: f"{r.name} · {r.workflow} · {r.state_name}" for r in listed}
        selected = st.session_state.get("runs.selected")
        chosen = st.selectbox(
            "Run details",
            ids,
            index=ids.index(selected) if selected in ids else 0,
            format_func=names.get,
            key="runs.detail",
        )
        run = next(r for r in listed if r.id == chosen)
        st.markdown(f"**{ICONS.get(run.state, '')} {run.state_name}** · `{run.name}`")
        if run.failed and st.button("Retry", key=f"runs.retry.{run.id}"):
            runs.retry_run(s, who, run.id)
            st.rerun()
        outputs, lines = runs.run_details(s, who, run.id)
        if outputs:
            st.subheader("Outputs")
        for artifact in outputs:
            with st.container(border=True):
                if artifact.description:
                    st.caption(artifact.description)
                if artifact.type == "markdown":
                    st.markdown(str(artifact.data))
                elif artifact.type == "table":
                    st.dataframe(artifact.data)
                elif artifact.type == "link":
                    st.markdown(str(artifact.data))
                else:
                    st.write(artifact.data)
                # not st.download_button: its /media/ URL would serve the file without a session
                if st.button("Download", key=f"runs.download.{artifact.id}"):
                    send_file(*runs.download_artifact(s, who, artifact.id))
        with st.expander("Logs", expanded=not outputs):
            st.code("\n".join(f"{x.at:%H:%M:%S} {x.message}" for x in lines) or "(no logs yet)")


run_list()
