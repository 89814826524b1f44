"""Runs: failed and waiting runs on top, each with its reason in the client's words and a Retry
button; then the other runs newest first, a page at a time. Filters (workflow, state, days) go
to the Prefect API; only the selected run's outputs and logs are read. "Run now" starts one.
The list refreshes itself while a run is active. An output is downloaded only after a
signed-in click, and only over the session (``send_file``)."""

from __future__ import annotations

from datetime import date, timedelta

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
PAGE_SIZE = 25
CARDS = 5  # failed and waiting runs shown as cards; the others in a table
ALL = "All workflows"


def _duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _when(run: runs.RunView) -> str:
    at = run.started or run.expected_start
    return f"{at:%Y-%m-%d %H:%M:%S}" if at else "not yet"


st.title("Runs")
s, who, client = settings(), principal(), acting_client()
workflows: list[str] = []

with friendly_errors():
    listed_activations = workspace.activations(s, who, client)
    workflows = sorted({a.workflow for a in listed_activations})
    active = [a.workflow for a in listed_activations if a.status != "inactive"]
    if active:
        left, right = st.columns([3, 1])
        chosen = left.selectbox("Workflow", active, key="runs.workflow")
        if right.button("Run now", type="primary", key="runs.run_now"):
            started = runs.run_now(s, who, chosen, client=client)
            st.session_state["runs.selected"] = started.id
            st.toast(f"Started {started.name}")
    else:
        st.info("Activate a workflow to run it.")

with st.expander("Filter", expanded=False):
    f_workflow, f_state, f_days = st.columns(3)
    workflow = f_workflow.selectbox("Show workflow", [ALL, *workflows], key="runs.f.workflow")
    states = f_state.multiselect("State", list(runs.STATE_CHOICES), key="runs.f.state")
    today = date.today()
    days = f_days.date_input("Days", (today - timedelta(days=30), today), key="runs.f.days")
picked = list(days) if isinstance(days, tuple | list) else [days]
run_filter = runs.RunFilter(
    workflow=None if workflow == ALL else workflow,
    states=tuple(states),
    since=picked[0] if picked else None,
    until=picked[-1] if picked else None,
)
if st.session_state.get("runs.filter") != run_filter:
    st.session_state["runs.filter"] = run_filter
    st.session_state["runs.offset"] = 0


def _attention(page: runs.RunsPage) -> set[str]:
    """Cards of the newest failed and waiting runs, the others as a table; returns the ids
    that got a Retry button."""
    retry_shown: set[str] = set()
    if not page.attention:
        return retry_shown
    st.subheader("Needs your attention")
    for run in page.attention[:CARDS]:
        with st.container(border=True):
            head, act = st.columns([5, 1])
            head.markdown(
                f"**{ICONS.get(run.state, '')} {run.workflow or run.name}** · {run.state_name}"
                f" · {_when(run)}"
            )
            (head.error if run.failed else head.warning)(run.reason or run.state_name)
            if run.failed:
                retry_shown.add(run.id)
                if act.button("Retry", key=f"runs.retry.{run.id}", type="primary"):
                    runs.retry_run(s, who, run.id)
                    st.session_state["runs.selected"] = run.id
                    st.rerun()
            if act.button("Details", key=f"runs.show.{run.id}"):
                st.session_state["runs.selected"] = run.id
    more = page.attention[CARDS:]
    if more:
        st.caption(f"{len(more)} more: pick one under Run details to see it or retry it.")
        st.dataframe(
            [
                {"state": r.state_name, "workflow": r.workflow, "when": _when(r), "why": r.reason}
                for r in more
            ],
            hide_index=True,
            key="runs.more",
        )
    return retry_shown


def _pick() -> None:
    """The run chosen in "Run details" stays selected across reruns and refreshes."""
    st.session_state["runs.selected"] = st.session_state.get("runs.detail")


def _details(run: runs.RunView, retry_shown: set[str]) -> None:
    st.markdown(f"**{ICONS.get(run.state, '')} {run.state_name}** · `{run.name}`")
    if run.reason:
        st.caption(run.reason)
    if run.failed and run.id not in retry_shown and st.button("Retry", key=f"runs.retry.{run.id}"):
        runs.retry_run(s, who, run.id)
        st.rerun()
    outputs, lines = runs.run_details(s, who, run.id)
    if outputs:
        st.subheader("Outputs")
    for artifact in outputs:
        with st.container(border=True):
            if artifact.description:
                st.caption(artifact.description)
            if artifact.type == "table":
                st.dataframe(artifact.data)
            elif artifact.type in ("markdown", "link"):
                st.markdown(str(artifact.data))
            else:
                st.write(artifact.data)
            # not st.download_button: its /media/ URL would serve the file without a session
            if st.button("Download", key=f"runs.download.{artifact.id}"):
                send_file(*runs.download_artifact(s, who, artifact.id))
    with st.expander("Logs", expanded=not outputs):
        st.code("\n".join(f"{x.at:%H:%M:%S} {x.message}" for x in lines) or "(no logs yet)")


@st.fragment(run_every=timedelta(seconds=3) if st.session_state.get("runs.live") else None)
def run_list() -> None:
    with friendly_errors():
        offset = st.session_state.get("runs.offset", 0)
        page = runs.runs_page(s, who, client=client, flt=run_filter, limit=PAGE_SIZE, offset=offset)
        listed = page.runs
        live = any(r.active and not r.waiting for r in listed)  # an answer moves those
        if live != st.session_state.get("runs.live", False):
            # the refresh interval is fixed when the fragment is defined: redefine it
            st.session_state["runs.live"] = live
            st.rerun(scope="app")
        if not listed:
            chosen = run_filter.workflow or run_filter.states
            st.info("No runs match these filters." if chosen else "No runs yet in these days.")
            return
        retry_shown = _attention(page)
        if page.rest or offset:
            st.subheader("Other runs")
            st.dataframe(
                [
                    {
                        "state": f"{ICONS.get(r.state, '')} {r.state_name}",
                        "workflow": r.workflow,
                        "trigger": r.trigger,
                        "started": _when(r),
                        "duration": _duration(r.duration),
                        "run": r.name,
                    }
                    for r in page.rest
                ],
                hide_index=True,
                key="runs.table",
            )
            newer, older = st.columns(2)
            if offset and newer.button("Newer", key="runs.newer"):
                st.session_state["runs.offset"] = max(offset - PAGE_SIZE, 0)
                st.rerun(scope="fragment")
            if page.has_more and older.button("Older", key="runs.older"):
                st.session_state["runs.offset"] = offset + PAGE_SIZE
                st.rerun(scope="fragment")
        ids = [r.id for r in listed]
        names = {r.id: f"{r.name} · {r.workflow} · {r.state_name}" for r in listed}
        selected = st.session_state.get("runs.selected")
        if selected in ids:
            st.session_state["runs.detail"] = selected  # before the widget exists: allowed
        elif st.session_state.get("runs.detail") not in ids:
            st.session_state.pop("runs.detail", None)
        chosen = st.selectbox(
            "Run details", ids, format_func=names.get, key="runs.detail", on_change=_pick
        )
        _details(next(r for r in listed if r.id == chosen), retry_shown)


run_list()
