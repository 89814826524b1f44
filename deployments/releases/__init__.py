"""Workflow releases: immutable, content-addressed snapshots of the code a workflow runs, their
stores (a folder or S3) and the Prefect pull steps that fetch them.

Kept import-light: ``deployments.releases.pull`` runs inside flow-run processes.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LocalReleaseStore": "deployments.releases.store",
    "ReleaseStore": "deployments.releases.store",
    "S3ReleaseStore": "deployments.releases.store",
    "Snapshot": "deployments.releases.snapshot",
    "build": "deployments.releases.snapshot",
    "involved_paths": "deployments.releases.snapshot",
    "release_store": "deployments.releases.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deployments.releases' has no attribute {name!r}")
