"""prefect.yaml's build and push steps (``deployments.releases.steps``) on a git checkout of the
project's own runtime packages and CLI: a release from clean ``HEAD``, refused while a needed file
has uncommitted changes (unless explicitly allowed), and the pull steps a deployment gets, run by
a real worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate

from agency.db import upgrade
from agency.settings import PROJECT_DIR, Settings, get_settings
from deployments.releases.pull import run_release_steps
from deployments.releases.steps import create_release, push_release
from deployments.releases.store import release_store
from services import activate, add_client
from services.releases import create_release as create_release_record
from services.releases import list_releases
from tests.deployments.test_releases import (
    _git,
    _run,
    _write_probe,
    make_project,
    register_probe,
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A committed checkout with the runtime packages and ``cli/``; AGENCY_HOME in tmp_path."""
    root = make_project(tmp_path)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(PROJECT_DIR / "cli", root / "cli", ignore=ignore)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "cli")
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AGENCY_PROJECT_DIR", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def _head(project: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def test_build_step_makes_a_release_from_head_and_push_step_hands_over_its_pull_steps(
    project: Path, tmp_path: Path
) -> None:
    made = create_release("daily_digest", project_dir=str(project))
    assert (made["workflow"], made["source"]) == ("daily_digest", "git")
    assert made["commit"] == _head(project) and made["short"] == made["digest"][:12]
    settings = Settings(home=tmp_path / "home", project_dir=project)
    [recorded] = list_releases(settings, "daily_digest")
    assert recorded.digest == made["digest"]

    pushed = push_release(made["digest"])
    folder = settings.releases_dir / made["digest"]
    assert pushed["directory"] == str(folder) and (folder / "flows/daily_digest.py").is_file()
    enter, verify = pushed["pull_steps"]
    assert enter == {"deployments.releases.pull.enter_release": {"directory": str(folder)}}
    assert verify["deployments.releases.pull.verify_release"]["digest"] == made["digest"]
    assert pushed["job_variables"] == {"env": {"PYTHONPATH": str(folder)}}
    # the template deployment's one pull step runs them: the run's code is the release's
    cwd, path = Path.cwd(), list(sys.path)
    try:
        outputs = run_release_steps(pushed["pull_steps"])
        assert Path.cwd() == folder and sys.path[0] == str(folder)
        assert outputs["digest"] == made["digest"]
    finally:
        os.chdir(cwd)
        sys.path[:] = path
    # the same commit gives the same release
    assert create_release("daily_digest", project_dir=str(project))["digest"] == made["digest"]


def test_build_step_refuses_uncommitted_changes_unless_explicitly_allowed(
    project: Path,
) -> None:
    clean = create_release("daily_digest", project_dir=str(project))
    with (project / "flows/daily_digest.py").open("a") as edited:
        edited.write("\n# an edit not committed yet\n")
    with pytest.raises(RuntimeError, match=r"daily_digest.*flows/daily_digest\.py"):
        create_release("daily_digest", project_dir=str(project))
    with pytest.raises(RuntimeError):
        create_release("daily_digest", allow_dirty="", project_dir=str(project))
    dirty = create_release("daily_digest", allow_dirty="1", project_dir=str(project))
    assert dirty["source"] == "worktree" and dirty["digest"] != clean["digest"]


def test_push_step_refuses_a_release_the_store_does_not_hold(project: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not in the store"):
        push_release("0" * 64)


def test_the_one_pull_step_of_a_template_runs_the_release_through_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_worker: Any, client_slug: str
) -> None:
    """The pull section prefect.yaml gives a template (``run_release_steps`` over the push
    step's ``pull_steps``) in a real flow-run process: the run imports the release."""
    register_probe(monkeypatch)
    project = make_project(tmp_path / "probe")
    settings = Settings(home=tmp_path / "home", project_dir=project, work_pool=prefect_worker.pool)
    upgrade(settings.platform_database_url)
    release = create_release_record(settings, "release_probe")
    out = tmp_path / "out.json"
    add_client(settings, client_slug, client_slug)
    view = activate(settings, client_slug, "release_probe", {"out": str(out)}, None)
    assert view.release == release.short and view.deployment_id
    steps = release_store(settings).pull_steps(release.digest)
    with get_client(sync_client=True) as api:
        api.update_deployment(
            UUID(view.deployment_id),
            DeploymentUpdate(
                pull_steps=[{"deployments.releases.pull.run_release_steps": {"steps": steps}}]
            ),
        )
    _write_probe(project, "edited in the working tree")
    record = _run(view.deployment_id, out)
    assert record["marker"] == "v1"
    assert record["flows_from"].startswith(str(settings.releases_dir / release.digest))
