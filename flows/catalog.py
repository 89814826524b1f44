"""The catalog of prebuilt workflows, keyed by slug."""

from __future__ import annotations

from agency.errors import NotFound
from flows.daily_digest import MANIFEST as DAILY_DIGEST
from flows.event_archive import MANIFEST as EVENT_ARCHIVE
from flows.lead_intake import MANIFEST as LEAD_INTAKE
from flows.manifest import WorkflowManifest
from flows.newsletter_approval import MANIFEST as NEWSLETTER_APPROVAL
from flows.review_sentiment import MANIFEST as REVIEW_SENTIMENT
from flows.uptime_monitor import MANIFEST as UPTIME_MONITOR

WORKFLOWS: dict[str, WorkflowManifest] = {
    m.slug: m
    for m in (
        DAILY_DIGEST,
        LEAD_INTAKE,
        UPTIME_MONITOR,
        REVIEW_SENTIMENT,
        NEWSLETTER_APPROVAL,
        EVENT_ARCHIVE,
    )
}


def all_workflows() -> dict[str, WorkflowManifest]:
    """Prebuilt workflows plus the registered spec workflows (prebuilt win on a name clash)."""
    from flows.spec_catalog import manifest_for, registered_specs

    specs = {name: manifest_for(spec) for name, spec in registered_specs().items()}
    return {**specs, **WORKFLOWS}


def get_workflow(slug: str) -> WorkflowManifest:
    """Return the manifest of ``slug``; raise ``NotFound`` naming the known workflows."""
    workflows = all_workflows()
    try:
        return workflows[slug]
    except KeyError:
        known = ", ".join(sorted(workflows))
        raise NotFound(f"Unknown workflow '{slug}'. Known workflows: {known}.") from None


def list_workflows() -> list[WorkflowManifest]:
    """Every workflow in the catalog, by slug."""
    workflows = all_workflows()
    return [workflows[s] for s in sorted(workflows)]
