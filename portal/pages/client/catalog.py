"""Catalog: the prebuilt workflows, what each needs (credentials, the settings the client fills
in), its triggers and whether it is active; agency staff also see the agency's settings."""

from __future__ import annotations

import streamlit as st

from blocks.words import kind_words
from flows.manifest import WorkflowManifest
from portal.components import acting_client, friendly_errors, principal, settings
from portal.components.workflow_graph import workflow_graph
from services import workspace
from services.workflow_picture import pictures

STATUS = {"active": "🟢 Active", "paused": "⏸️ Paused", "inactive": "⚪ Deactivated"}


def _setting_lines(manifest: WorkflowManifest, names: list[str]) -> str:
    """One list line per setting: its title, `` *`` when required."""
    fields = manifest.settings_model.model_fields
    return "\n".join(
        f"- {fields[n].title or n}{' *' if fields[n].is_required() else ''}" for n in names
    )


st.title("Catalog")
st.caption("Prebuilt workflows your agency runs for you.")
with friendly_errors():
    s, who, client = settings(), principal(), acting_client()
    entries = workspace.catalog(s, who, client)
    # last runs only of the active workflows: one read each, all at once, then one for their tasks
    drawn = pictures(
        s, who, [e.slug for e in entries], client, runs_of={e.slug for e in entries if e.status}
    )
    for entry in entries:
        m = entry.manifest
        with st.container(border=True):
            head, badge = st.columns([4, 1])
            head.subheader(m.title)
            badge.markdown(f"**{STATUS.get(entry.status or '', 'Not active')}**")
            st.write(m.description)
            if entry.slug in drawn:
                workflow_graph(drawn[entry.slug])
            # one markdown block per column: fewer elements render noticeably faster
            needs, fields, triggers = st.columns(3)
            needs.markdown(
                "**Credentials**\n\n"
                + "\n".join(
                    f"- {kind_words(r.kind).title}{' (optional)' if r.optional else ''}: "
                    f"{r.description}"
                    for r in m.credentials
                )
            )
            # only what the client fills in: credentials are picked, the agency's are the agency's
            fields.markdown(
                "**Settings**\n\n"
                + (_setting_lines(m, m.client_fields()) or "- None to fill in")
                + (
                    "\n\n**Agency settings**\n\n" + _setting_lines(m, list(m.agency_fields))
                    if who.is_agency and m.agency_fields
                    else ""
                )
            )
            schedule = f"\n\nDefault schedule: `{m.default_cron}`" if m.default_cron else ""
            triggers.markdown(
                "**Triggers**\n\n"
                + "\n".join(f"- {t}" for t in m.triggers)
                + schedule
                + f"\n\nVersion {m.version}"
            )
            if entry.missing_credentials:
                kinds = ", ".join(kind_words(r.kind).title for r in entry.missing_credentials)
                st.warning(f"Add these under Credentials before activating: {kinds}.")
