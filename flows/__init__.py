"""Prebuilt agency workflows, each a Prefect flow with a manifest, and their catalog."""

from flows.catalog import WORKFLOWS, get_workflow, list_workflows
from flows.manifest import CredentialRequirement, WorkflowManifest

__all__ = [
    "WORKFLOWS",
    "CredentialRequirement",
    "WorkflowManifest",
    "get_workflow",
    "list_workflows",
]
