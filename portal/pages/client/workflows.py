"""Workflows: the workflow's picture, activate with a generated settings form and a schedule
picker (each problem shown under its field, nothing saved while one is left), webhook URL and
secret (shown once), pause / resume / deactivate, version history with rollback."""

from __future__ import annotations

from typing import Any

import streamlit as st

from agency.errors import AgencyError
from portal.components import (
    acting_client,
    friendly_errors,
    model_form,
    principal,
    settings,
    show_field_errors,
)
from portal.components.chains import chain_list
from portal.components.credential_picker import credential_pickers
from portal.components.deliveries import delivery_list
from portal.components.workflow_graph import workflow_graph
from services import workspace
from services.activation_form import CRON, TIMEZONE, form_errors
from services.workflow_picture import pictures

PRESETS = {
    "Every day at 07:00": "0 7 * * *",
    "Weekdays at 09:00": "0 9 * * 1-5",
    "Every hour": "0 * * * *",
    "Every Monday at 08:00": "0 8 * * 1",
    "Custom cron": None,
    "No schedule (run manually)": "",
}

st.title("Workflows")
s, who, client = settings(), principal(), acting_client()
with friendly_errors():
    entries = workspace.catalog(s, who, client)
    current = {a.workflow: a for a in workspace.activations(s, who, client)}
    titles = {e.slug: e.manifest.title for e in entries}
    workflow = st.selectbox("Workflow", list(titles), format_func=titles.get, key="wf.workflow")
    manifest = workspace.manifest(workflow)
    act = current.get(workflow)
    tz_default = act.timezone if act else workspace.client_timezone(s, who, client)

    if act and act.status != "inactive":
        st.markdown(f"**Status:** {act.status} · version {act.version}")
        cols = st.columns(3)
        if act.status == "active" and cols[0].button("Pause", key="wf.pause"):
            workspace.change_status(s, who, workflow, "pause", client)
            st.rerun()
        if act.status == "paused" and cols[0].button("Resume", key="wf.resume"):
            workspace.change_status(s, who, workflow, "resume", client)
            st.rerun()
        if cols[1].button("Deactivate", key="wf.deactivate"):
            workspace.change_status(s, who, workflow, "deactivate", client)
            st.rerun()
    else:
        st.markdown("**Status:** not active")
    # the last run is read only for an activation (a workflow never activated has none)
    drawn = pictures(s, who, [workflow], client, runs_of=[workflow] if act else []).get(workflow)
    if drawn is not None:
        workflow_graph(drawn)

    st.subheader("Settings")
    values = act.settings if act else {}
    # clients fill in their own settings; the agency's (model, prompts...) keep their values
    shown = (
        [n for n in manifest.settings_model.model_fields if n not in manifest.credential_fields()]
        if who.is_agency
        else manifest.client_fields()
    )
    data = {k: values[k] for k in manifest.agency_fields if k in values and not who.is_agency}
    slots: dict[str, Any] = {}  # a place under each field for its problems
    data |= model_form(
        manifest.settings_model, key=f"wf.{workflow}", values=values, only=shown, slots=slots
    )
    stored = [(c.kind, c.name) for c in workspace.credentials(s, who, client)]
    data |= credential_pickers(manifest, stored, values, key=f"wf.{workflow}", slots=slots)

    st.subheader("Schedule")
    preset_names = list(PRESETS)
    existing = act.cron if act else manifest.default_cron
    matching = [n for n, c in PRESETS.items() if c == (existing or "")]
    preset = st.selectbox(
        "When",
        preset_names,
        index=preset_names.index(matching[0]) if matching else preset_names.index("Custom cron"),
        key="wf.preset",
    )
    cron = PRESETS[preset]
    if cron is None:
        cron = st.text_input("Cron expression", value=existing or "", key="wf.cron")
        slots[CRON] = st.empty()
    timezone = st.text_input("Time zone", value=tz_default, key="wf.timezone")
    slots[TIMEZONE] = st.empty()
    preview, general = st.empty(), st.empty()
    label = "Save changes" if act and act.status != "inactive" else "Activate"
    pressed = st.button(label, type="primary", key="wf.activate")
    tried = f"wf.tried.{workflow}"
    if pressed:
        st.session_state[tried] = True
    # once the person pressed the button, each problem stays under its field until corrected
    errors = (
        form_errors(workflow, data, cron or None, timezone) if tried in st.session_state else {}
    )
    elsewhere = show_field_errors(slots, errors)
    if cron and CRON not in errors and TIMEZONE not in errors:
        try:
            upcoming = workspace.schedule_preview(cron, timezone)
            preview.caption("Next runs: " + " · ".join(f"{t:%a %d %b %H:%M}" for t in upcoming))
        except AgencyError as exc:
            preview.warning(str(exc))
    if errors:
        fields = manifest.settings_model.model_fields
        general.error(
            "Nothing was saved: correct the fields marked above."
            + "".join(
                f"\n\n{(fields[n].title if n in fields else None) or n}: {' '.join(p)}"
                for n, p in elsewhere.items()
            )
        )
    elif pressed:
        view = workspace.activate_workflow(s, who, workflow, data, cron or None, timezone, client)
        del st.session_state[tried]
        st.session_state["wf.notice"] = f"{manifest.title} is active (version {view.version})."
        st.rerun()
    notice = st.session_state.pop("wf.notice", None)
    if notice:
        st.success(notice)

    if "webhook" in manifest.triggers:
        st.subheader("Webhook")
        if not workspace.webhooks_available():
            st.info("Webhooks are not available on this platform yet.")
        else:
            hook = workspace.get_webhook(s, who, workflow, client)
            if hook is not None:
                st.code(hook.url, language=None)
                st.caption(f"Verifier: {hook.verifier} · active: {hook.active}")
                delivery_list(workspace.list_deliveries(s, who, workflow, client))
                if st.button("Rotate secret", key="wf.rotate"):
                    secret = workspace.rotate_webhook_secret(s, who, workflow, client)
                    st.warning("Copy this secret now: it will not be shown again.")
                    st.code(secret.secret, language=None)
            else:
                verifier = st.selectbox(
                    "Sender signs like",
                    ["standard", "github", "stripe", "slack", "shopify", "token"],
                    key="wf.verifier",
                )
                if st.button("Enable webhook", key="wf.enable_webhook"):
                    secret = workspace.enable_webhook(s, who, workflow, verifier, client)
                    st.code(secret.url, language=None)
                    st.warning("Copy this secret now: it will not be shown again.")
                    st.code(secret.secret, language=None)

    chain_list(s, who, titles, client)
    versions = workspace.history(s, who, workflow, client)
    if versions:
        st.subheader("Version history")
        st.dataframe(
            [
                {
                    "version": v.version,
                    "status": v.status,
                    "schedule": v.cron or "manual",
                    "time zone": v.timezone,
                    "saved": f"{v.created_at:%Y-%m-%d %H:%M}",
                    "by": v.created_by,
                }
                for v in versions
            ],
            hide_index=True,
        )
        older = [v.version for v in versions[1:]]
        if older:
            target = st.selectbox("Roll back to version", older, key="wf.rollback_to")
            if st.button("Roll back", key="wf.rollback"):
                view = workspace.roll_back(s, who, workflow, target, client)
                st.session_state["wf.notice"] = (
                    f"Rolled back to version {target} (now version {view.version})."
                )
                st.rerun()
