"""Catalog: the prebuilt workflows, what each needs, its triggers and whether it is active."""

from __future__ import annotations

import streamlit as st

from blocks.words import kind_words
from portal.components import acting_client, friendly_errors, principal, settings
from services import workspace

STATUS = {"active": "🟢 Active", "paused": "⏸️ Paused", "inactive": "⚪ Deactivated"}

st.title("Catalog")
st.caption("Prebuilt workflows your agency runs for you.")
with friendly_errors():
    for entry in workspace.catalog(settings(), principal(), acting_client()):
        m = entry.manifest
        with st.container(border=True):
            head, badge = st.columns([4, 1])
            head.subheader(m.title)
            badge.markdown(f"**{STATUS.get(entry.status or '', 'Not active')}**")
            st.write(m.description)
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
            fields.markdown(
                "**Settings**\n\n"
                + "\n".join(
                    f"- {f.title or name}{' *' if f.is_required() else ''}"
                    for name, f in m.settings_model.model_fields.items()
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
