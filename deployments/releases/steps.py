"""Prefect build and push steps that make ``prefect deploy`` (prefect.yaml) ship a release.

Build: :func:`create_release` runs ``agency release create <workflow> --json`` in the project
(a snapshot of git ``HEAD``, refused while the files it needs have uncommitted changes, put
into the configured release store and recorded). Push: :func:`push_release` makes sure the
configured store holds the release and returns the pull steps and job variables a deployment
needs to run it, for prefect.yaml to template into the deployment::

    build:
      - deployments.releases.steps.create_release: {id: release, workflow: daily_digest}
    push:
      - deployments.releases.steps.push_release: {id: store, digest: "{{ release.digest }}"}
    pull:
      - deployments.releases.pull.run_release_steps: {steps: "{{ store.pull_steps }}"}
    # work_pool.job_variables: {env: {PYTHONPATH: "{{ store.directory }}"}}
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

#: how long one ``agency release create`` may take
CREATE_TIMEOUT = 300.0


def _truthy(value: str | bool | None) -> bool:
    if isinstance(value, bool):
        return value
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def create_release(
    workflow: str, allow_dirty: str | bool = False, project_dir: str = "."
) -> dict[str, Any]:
    """Build step: ``agency release create <workflow>``; returns the release (``digest``,
    ``short``, ``workflow_version``, ``source``, ``commit``).

    ``allow_dirty`` (prefect.yaml passes ``AGENCY_RELEASE_ALLOW_DIRTY``) takes the files on
    disk instead of ``HEAD`` (``--from-worktree``): for tests and trials, never for clients.
    Raises ``RuntimeError`` with the command's own error line when it refuses.
    """
    command = [sys.executable, "-m", "cli.main", "release", "create", workflow, "--json"]
    if _truthy(allow_dirty):
        command.append("--from-worktree")
    done = subprocess.run(
        command,
        cwd=Path(project_dir).resolve(),
        capture_output=True,
        text=True,
        timeout=CREATE_TIMEOUT,
    )
    if done.returncode:
        problem = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise RuntimeError(f"agency release create {workflow} failed: {problem[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def push_release(digest: str) -> dict[str, Any]:
    """Push step: check that the configured release store holds ``digest`` intact (fetched
    from S3 when the local cache lacks it) and return ``pull_steps`` and ``job_variables`` that
    make a flow run import that release, and ``directory`` (its local folder)."""
    from agency.settings import get_settings
    from deployments.releases.snapshot import digest_of
    from deployments.releases.store import release_store

    store = release_store(get_settings())
    folder = store.local_path(digest)
    if digest_of(folder)[0] != digest:
        raise RuntimeError(f"Release folder {folder} does not hold release {digest[:12]}.")
    return {
        "digest": digest,
        "directory": str(folder),
        "pull_steps": store.pull_steps(digest),
        "job_variables": store.job_variables(digest),
    }


__all__ = ["create_release", "push_release"]
