"""Releases on a real Prefect server and process worker: a pinned client runs its release's
code whatever happens to the working tree; two releases side by side; per-client rollback of
code and settings; git-only, content-addressed releases; breaking settings refused.

Each test works on its own git checkout (a copy of the runtime packages plus a probe workflow),
so editing "the working tree" never touches the repository the tests run from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from pydantic import BaseModel, Field

from agency.db import upgrade
from agency.errors import InputInvalid
from agency.settings import PROJECT_DIR, Settings
from deployments.releases.snapshot import RUNTIME_PACKAGES
from flows.manifest import WorkflowManifest
from services import activate, add_client, rollback
from services.releases import create_release, list_releases

PROBE = '''"""A test workflow that says which code ran."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow

MARKER = "{marker}"


@flow(name="release_probe")
def probe(client: str, settings: dict[str, Any] | None = None) -> str:
    import flows.manifest

    values = settings or {{}}
    record = {{"marker": MARKER, "flows_from": flows.manifest.__file__, "settings": values}}
    Path(values["out"]).write_text(json.dumps(record))
    return MARKER
'''
ENTRYPOINT = "tests/release_probe/probe.py:probe"


class ProbeSettings(BaseModel):
    """Where the probe writes what it ran."""

    out: str = Field(description="Output file.")
    note: str = Field(default="", description="Free text.")


class StricterSettings(ProbeSettings):
    """A later settings model with a new required field."""

    region: str = Field(description="A field old settings lack.")


def _manifest(model: type[BaseModel] = ProbeSettings) -> WorkflowManifest:
    return WorkflowManifest(
        slug="release_probe",
        title="Release probe",
        description="Says which code ran.",
        version="1.0.0",
        entrypoint=ENTRYPOINT,
        settings_model=model,
    )


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.test", "-C", str(project), *args],
        check=True,
        capture_output=True,
    )


def _write_probe(project: Path, marker: str, extra: str = "") -> None:
    (project / "tests" / "release_probe" / "probe.py").write_text(
        PROBE.format(marker=marker) + extra
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git checkout with the runtime packages and the probe workflow at ``v1``."""
    return make_project(tmp_path)


def make_project(tmp_path: Path) -> Path:
    """Make the probe's git checkout under ``tmp_path``."""
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in RUNTIME_PACKAGES:
        shutil.copytree(PROJECT_DIR / package, root / package, ignore=ignore)
    (root / "tests" / "release_probe").mkdir(parents=True)
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "release_probe" / "__init__.py").write_text("")
    _write_probe(root, "v1")
    (root / ".gitignore").write_text("__pycache__/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "v1")
    return root


@pytest.fixture
def probe_workflow(monkeypatch: pytest.MonkeyPatch) -> None:
    register_probe(monkeypatch)


def register_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the probe workflow into the catalog for one test."""
    from flows import catalog

    monkeypatch.setitem(catalog.WORKFLOWS, "release_probe", _manifest())


def _settings(tmp_path: Path, project: Path, pool: str) -> Settings:
    settings = Settings(home=tmp_path / "home", project_dir=project, work_pool=pool)
    upgrade(settings.platform_database_url)
    return settings


def _run(deployment_id: str, out: Path) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    with get_client(sync_client=True) as api:
        run = api.create_flow_run_from_deployment(UUID(deployment_id))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = api.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            time.sleep(0.5)
    assert state is not None and state.is_completed(), state
    return json.loads(out.read_text())


def test_release_is_made_from_clean_git_and_content_addressed(
    tmp_path: Path, project: Path, probe_workflow: None
) -> None:
    settings = _settings(tmp_path, project, "unused")
    first = create_release(settings, "release_probe")
    assert first.source == "git" and first.commit is not None and first.seconds is not None
    folder = settings.releases_dir / first.digest
    assert (folder / "tests/release_probe/probe.py").read_text().count('MARKER = "v1"') == 1
    assert (folder / "flows/manifest.py").is_file() and (folder / "release.json").is_file()
    assert not (folder / "services").exists()  # only what a run needs
    again = create_release(settings, "release_probe")
    assert (again.id, again.digest, again.seconds) == (first.id, first.digest, None)

    _write_probe(project, "v1-unsaved")
    with pytest.raises(InputInvalid, match=r"tests/release_probe/probe\.py"):
        create_release(settings, "release_probe")
    _git(project, "commit", "-q", "-am", "v2")
    second = create_release(settings, "release_probe")
    assert second.digest != first.digest
    assert [r.digest for r in list_releases(settings, "release_probe")] == [
        second.digest,
        first.digest,
    ]


def test_pinned_clients_run_their_release_not_the_working_tree(
    tmp_path: Path, project: Path, probe_workflow: None, prefect_worker: Any, client_slug: str
) -> None:
    settings = _settings(tmp_path, project, prefect_worker.pool)
    old, new = f"{client_slug}a", f"{client_slug}b"
    for slug in (old, new):
        add_client(settings, slug, slug)
    out = tmp_path / "out.json"
    # the first activation makes the workflow's first release from the files on disk
    view = activate(settings, old, "release_probe", {"out": str(out)}, None)
    [v1] = list_releases(settings, "release_probe")
    assert view.release == v1.digest[:12] and v1.source == "worktree"

    _write_probe(project, "tree-edit")  # a half-saved edit in the working tree
    ran = _run(str(view.deployment_id), out)
    assert ran["marker"] == "v1"
    assert ran["flows_from"].startswith(str(settings.releases_dir / v1.digest))

    _git(project, "commit", "-q", "-am", "v2")
    v2 = create_release(settings, "release_probe")
    canary = activate(settings, new, "release_probe", {"out": str(out)}, None, release=v2.short)
    assert _run(str(canary.deployment_id), out)["marker"] == "tree-edit"
    assert _run(str(view.deployment_id), out)["marker"] == "v1"  # the other client stays
    # re-activating without a release keeps the pin
    view = activate(settings, old, "release_probe", {"out": str(out), "note": "x"}, None)
    assert view.release == v1.short


def test_rollback_restores_code_and_settings(
    tmp_path: Path, project: Path, probe_workflow: None, prefect_worker: Any, client_slug: str
) -> None:
    settings = _settings(tmp_path, project, prefect_worker.pool)
    add_client(settings, client_slug, client_slug)
    out = tmp_path / "out.json"
    v1 = create_release(settings, "release_probe")
    activate(settings, client_slug, "release_probe", {"out": str(out), "note": "one"}, None)
    _write_probe(project, "v2")
    _git(project, "commit", "-q", "-am", "v2")
    v2 = create_release(settings, "release_probe")
    second = activate(
        settings,
        client_slug,
        "release_probe",
        {"out": str(out), "note": "two"},
        None,
        release=v2.short,
    )
    assert (second.version, second.release) == (2, v2.short)
    assert _run(str(second.deployment_id), out)["marker"] == "v2"

    back = rollback(settings, client_slug, "release_probe", 1)
    assert (back.version, back.release, back.settings["note"]) == (3, v1.short, "one")
    ran = _run(str(back.deployment_id), out)
    assert (ran["marker"], ran["settings"]["note"]) == ("v1", "one")


def test_release_refuses_settings_it_cannot_accept_unless_it_migrates(
    tmp_path: Path,
    project: Path,
    probe_workflow: None,
    prefect_server: str,
    client_slug: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deployments import ensure_work_pool
    from flows import catalog

    settings = _settings(tmp_path, project, "agency-release-tests")
    ensure_work_pool(settings.work_pool)
    add_client(settings, client_slug, client_slug)
    stored = {"out": str(tmp_path / "o.json")}
    activate(settings, client_slug, "release_probe", stored, None)

    monkeypatch.setitem(catalog.WORKFLOWS, "release_probe", _manifest(StricterSettings))
    _write_probe(project, "v2")
    _git(project, "commit", "-q", "-am", "v2 needs a region")
    strict = create_release(settings, "release_probe")
    monkeypatch.setitem(catalog.WORKFLOWS, "release_probe", _manifest())  # the tree still old
    with pytest.raises(InputInvalid, match=r"does not accept .*region"):
        activate(settings, client_slug, "release_probe", stored, None, release=strict.short)

    migration = "\n\ndef migrate_settings(old):\n    return {**old, 'region': 'eu'}\n"
    monkeypatch.setitem(catalog.WORKFLOWS, "release_probe", _manifest(StricterSettings))
    _write_probe(project, "v3", migration)
    _git(project, "commit", "-q", "-am", "v3 migrates")
    migrating = create_release(settings, "release_probe")
    monkeypatch.setitem(catalog.WORKFLOWS, "release_probe", _manifest())
    view = activate(settings, client_slug, "release_probe", stored, None, release=migrating.short)
    assert view.release == migrating.short and view.settings["region"] == "eu"
