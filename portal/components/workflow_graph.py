"""A workflow's steps as a graph (Graphviz, drawn by ``st.graphviz_chart``), each step coloured
by what it did in the last run: green completed, red failed, blue running, grey not run."""

from __future__ import annotations

import graphviz
import streamlit as st

from services.workflow_picture import StepState, WorkflowPicture

#: fill and border colour per step state
COLOURS: dict[StepState, tuple[str, str]] = {
    "completed": ("#d4edda", "#1e7e34"),
    "failed": ("#f8d7da", "#c62828"),
    "running": ("#d6e6fc", "#1a73e8"),
    "not_run": ("#eeeeee", "#9e9e9e"),
}
WORDS: dict[StepState, str] = {
    "completed": "done",
    "failed": "failed",
    "running": "running",
    "not_run": "not run",
}
_EDGE_STYLE = {
    "completed": {},
    "failed": {"color": "#c62828", "fontcolor": "#c62828", "style": "dashed"},
    "always": {"style": "dotted"},
}


def graph_source(picture: WorkflowPicture) -> str:
    """The DOT text of ``picture``: left to right, one box per step, one arrow per edge."""
    dot = graphviz.Digraph(name=picture.workflow)
    dot.attr(rankdir="LR", bgcolor="transparent", nodesep="0.3", ranksep="0.4")
    dot.attr("node", shape="box", style="rounded,filled", fontname="sans-serif", fontsize="11")
    dot.attr("edge", fontname="sans-serif", fontsize="9", color="#757575")
    for step in picture.outline.steps:
        state = picture.state_of(step.id)
        fill, border = COLOURS[state]
        dot.node(
            step.id,
            label=step.title,
            fillcolor=fill,
            color=border,
            tooltip=f"{step.title}: {WORDS[state]}",
        )
    for edge in picture.outline.edges:
        label = {"label": edge.label} if edge.label else {}
        dot.edge(edge.source, edge.to, **label, **_EDGE_STYLE[edge.on])
    return dot.source


def workflow_graph(picture: WorkflowPicture) -> None:
    """Draw ``picture`` and a one-line caption saying which run it shows."""
    st.graphviz_chart(graph_source(picture))
    run = picture.run
    if picture.runs_unavailable:
        st.caption("Steps of this workflow. The last run cannot be read right now.")
        return
    if run is None:
        st.caption("Steps of this workflow. After a run, each step shows what it did.")
        return
    when = f" of {run.started:%d %b %H:%M} UTC" if run.started else ""
    st.caption(
        f"Last run{when}: {run.state_name}. Green done · red failed · blue running · grey not run."
    )


__all__ = ["COLOURS", "graph_source", "workflow_graph"]
