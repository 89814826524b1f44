"""The catalog of prebuilt workflows, keyed by slug."""

from __future__ import annotations

from agency.errors import NotFound
from flows.daily_digest import MANIFEST as DAILY_DIGEST
from flows.manifest import WorkflowManifest

WORKFLOWS: dict[str, WorkflowManifest] = {m.slug: m for m in (DAILY_DIGEST,)}


def get_workflow(slug: str) -> WorkflowManifest:
    """Return the manifest of ``slug``; raise ``NotFound`` naming the known workflows."""
    try:
        return WORKFLOWS[slug]
    except KeyError:
        known = ", ".join(sorted(WORKFLOWS))
        raise NotFound(f"Unknown workflow '{slug}'. Known workflows: {known}.") from None


def list_workflows() -> list[WorkflowManifest]:
    """Every workflow in the catalog, by slug."""
    return [WORKFLOWS[s] for s in sorted(WORKFLOWS)]
