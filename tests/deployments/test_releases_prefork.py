"""The prefork worker keeps one warm template per release in use: clients pinned to two
releases both run their own release's code, each forked from its release's template."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client

from services import activate, add_client
from services.releases import create_release
from tests.deployments.test_releases import (
    _git,
    _settings,
    _write_probe,
    make_project,
    register_probe,
)


def _timed_run(deployment_id: str, out: Path) -> tuple[str, float]:
    """Run once; the marker it wrote and the seconds from creation to completion."""
    out.unlink(missing_ok=True)
    started = time.monotonic()
    with get_client(sync_client=True) as api:
        run = api.create_flow_run_from_deployment(UUID(deployment_id))
        deadline = started + 180
        while time.monotonic() < deadline:
            state = api.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            time.sleep(0.2)
    assert state is not None and state.is_completed(), state
    return json.loads(out.read_text())["marker"], time.monotonic() - started


def test_two_releases_run_side_by_side_from_warm_templates(
    tmp_path: Path, monkeypatch: Any, prefork_worker: Any, client_slug: str
) -> None:
    register_probe(monkeypatch)
    project = make_project(tmp_path)
    settings = _settings(tmp_path, project, prefork_worker.pool)
    v1 = create_release(settings, "release_probe")
    _write_probe(project, "v2")
    _git(project, "commit", "-q", "-am", "v2")
    v2 = create_release(settings, "release_probe")
    outs = {c: tmp_path / f"{c}.json" for c in ("a", "b")}
    ids = {}
    for c, release in (("a", v1), ("b", v2)):
        add_client(settings, f"{client_slug}{c}", c)
        view = activate(
            settings,
            f"{client_slug}{c}",
            "release_probe",
            {"out": str(outs[c])},
            None,
            release=release.short,
        )
        ids[c] = str(view.deployment_id)

    figures: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(2):
        for c, marker in (("a", "v1"), ("b", "v2")):
            ran, seconds = _timed_run(ids[c], outs[c])
            assert ran == marker
            figures[c].append(seconds)
    log = prefork_worker.log()
    assert f"of release {v1.short}" in log and f"of release {v2.short}" in log
    print(f"prefork first/warm run seconds: {figures}")
