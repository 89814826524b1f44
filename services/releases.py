"""Make, list and choose workflow releases.

A release is made from a clean git commit (``create_release``; ``agency release create``), or,
on a workflow's first activation when it has none yet, from the files on disk (``source``
"worktree"). Either way the client's deployment runs the stored copy, never the working tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agency.db import Activation, Client, session_scope
from agency.db.models import Release
from agency.errors import InputInvalid, NotFound
from agency.settings import Settings
from deployments.releases.snapshot import Source, build
from deployments.releases.store import release_store
from flows.catalog import get_workflow
from services.audit import audit
from services.auth import Principal, require_agency

#: name of the optional module-level function a release's flow module may declare to turn a
#: client's stored settings into ones its settings model accepts (see docs/releasing.md)
MIGRATION_FUNCTION = "migrate_settings"


@dataclass(frozen=True)
class ReleaseView:
    """What faces may show of a release."""

    id: int
    workflow: str
    digest: str
    workflow_version: str
    source: str
    commit: str | None
    files: int
    size_bytes: int
    created_at: datetime
    created_by: str | None
    seconds: float | None = None  # time it took to make, when just made

    @property
    def short(self) -> str:
        """The first 12 hex digits of the digest: how people name a release."""
        return self.digest[:12]


def view(row: Release, seconds: float | None = None) -> ReleaseView:
    return ReleaseView(
        row.id,
        row.workflow,
        row.digest,
        row.workflow_version,
        row.source,
        row.commit,
        row.files,
        row.size_bytes,
        row.created_at,
        row.created_by,
        seconds,
    )


def _manifest(settings: Settings, workflow: str) -> dict[str, Any]:
    manifest = get_workflow(workflow)
    module_file = settings.project_dir / manifest.entrypoint.split(":", 1)[0]
    declares = f"def {MIGRATION_FUNCTION}(" in module_file.read_text(errors="replace")
    return {
        "workflow": manifest.slug,
        "version": manifest.version,
        "entrypoint": manifest.entrypoint,
        "title": manifest.title,
        "settings_schema": manifest.settings_model.model_json_schema(),
        "migration": f"{manifest.entrypoint.split(':', 1)[0]}:{MIGRATION_FUNCTION}"
        if declares
        else None,
    }


def create_release(
    settings: Settings, workflow: str, *, source: Source = "git", actor: str = "cli"
) -> ReleaseView:
    """Snapshot ``workflow``'s code into the release store and record it (idempotent: the same
    code gives the existing release). ``source="git"`` refuses uncommitted changes."""
    with session_scope(settings.platform_database_url) as session:
        made = _make(settings, session, workflow, source, actor)
        if made.seconds is not None:
            audit(
                session,
                actor=actor,
                action="release.create",
                target=workflow,
                detail={"digest": made.digest, "version": made.workflow_version},
            )
        return made


def _make(
    settings: Settings, session: Session, workflow: str, source: Source, actor: str
) -> ReleaseView:
    """Build, store and record a release in ``session`` (``seconds`` is None when it existed)."""
    started = time.perf_counter()
    manifest = _manifest(settings, workflow)
    store = release_store(settings)
    settings.releases_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=settings.releases_dir))
    try:
        snapshot = build(settings.project_dir, scratch, manifest, source=source)
        existing = _by_digest(session, workflow, snapshot.digest)
        if existing is not None:
            return view(existing)
        store.put(snapshot)
        row = Release(
            workflow=workflow,
            digest=snapshot.digest,
            workflow_version=manifest["version"],
            source=source,
            commit=snapshot.commit,
            files=snapshot.files,
            size_bytes=snapshot.size_bytes,
            manifest=snapshot.manifest,
            created_by=actor,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # made at the same moment by another process
            found = _by_digest(session, workflow, snapshot.digest)
            if found is None:
                raise
            return view(found)
        return view(row, time.perf_counter() - started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _by_digest(session: Session, workflow: str, digest: str) -> Release | None:
    return session.scalar(
        select(Release).where(Release.workflow == workflow, Release.digest == digest)
    )


def list_releases(settings: Settings, workflow: str | None = None) -> list[ReleaseView]:
    """Releases, newest first, of one workflow or all."""
    with session_scope(settings.platform_database_url) as session:
        query = select(Release).order_by(Release.id.desc())
        if workflow is not None:
            query = query.where(Release.workflow == workflow)
        return [view(r) for r in session.scalars(query)]


def pinned_clients(settings: Settings) -> dict[int, list[str]]:
    """Slugs of the clients whose activation is pinned to each release id (agency-wide)."""
    with session_scope(settings.platform_database_url) as session:
        rows = session.execute(
            select(Activation.release_id, Client.slug)
            .join(Client, Client.id == Activation.client_id)
            .where(Activation.release_id.is_not(None), Activation.status != "inactive")
            .order_by(Client.slug)
        ).all()
    found: dict[int, list[str]] = {}
    for release_id, slug in rows:
        found.setdefault(release_id, []).append(slug)
    return found


@dataclass(frozen=True)
class PinView:
    """One client's activation of a workflow and the release it runs."""

    client: str
    workflow: str
    status: str
    version: int
    release: str | None
    workflow_version: str | None
    versions: list[int]


def pins(settings: Settings, principal: Principal) -> list[PinView]:
    """Every client's activations with their release and recorded versions (agency staff)."""
    require_agency(principal)
    with session_scope(settings.platform_database_url) as session:
        rows = session.execute(
            select(Client.slug, Activation, Release.digest)
            .join(Activation, Activation.client_id == Client.id)
            .outerjoin(Release, Release.id == Activation.release_id)
            .order_by(Activation.workflow, Client.slug)
        ).all()
        return [
            PinView(
                slug,
                act.workflow,
                act.status,
                act.version,
                digest[:12] if digest else None,
                act.workflow_version,
                [v.version for v in act.versions],
            )
            for slug, act, digest in rows
        ]


def find_release(session: Session, workflow: str, ref: str) -> Release:
    """The release of ``workflow`` named by ``ref``: a digest prefix (6+ hex digits), a
    semantic version (its newest release) or ``latest``; raise ``NotFound``."""
    query = select(Release).where(Release.workflow == workflow).order_by(Release.id.desc())
    if ref == "latest":
        row = session.scalar(query.limit(1))
    elif ref.count(".") == 2:
        row = session.scalar(query.where(Release.workflow_version == ref).limit(1))
    else:
        if len(ref) < 6 or any(c not in "0123456789abcdef" for c in ref.lower()):
            raise InputInvalid(
                f"'{ref}' is not a release: give a digest prefix (6+ hex digits), "
                "a version like 1.2.0, or 'latest'."
            )
        rows = list(session.scalars(query.where(Release.digest.startswith(ref.lower()))))
        if len(rows) > 1:
            raise InputInvalid(f"'{ref}' names {len(rows)} releases of '{workflow}'; give more.")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"Workflow '{workflow}' has no release '{ref}'. See `agency release list`.")
    return row


def settings_problems(row: Release, values: dict[str, Any]) -> list[str]:
    """Fields of ``values`` the release's settings model (its JSON schema) rejects, as
    ``field: message`` lines; empty when it accepts them."""
    schema = row.manifest.get("settings_schema")
    if not schema:
        return []
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            where = str(error.message).split("'")[1] if "'" in error.message else where
        elif error.validator == "additionalProperties" and "'" in error.message:
            where = error.message.split("'")[1]
        problems.append(f"{where or '(settings)'}: {error.message}")
    return problems


def migrate_settings(settings: Settings, row: Release, values: dict[str, Any]) -> dict[str, Any]:
    """Run the release's own ``migrate_settings(values)`` in a fresh interpreter whose imports
    come from the release, and return what it gives back."""
    entry = row.manifest.get("migration")
    if not entry:
        return values
    folder = release_store(settings).local_path(row.digest)
    program = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('release_flow', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"print(json.dumps(module.{MIGRATION_FUNCTION}(json.loads(sys.stdin.read()))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(folder / entry.split(":", 1)[0])],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(folder)},
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputInvalid(f"Release {row.digest[:12]}'s settings migration failed: {last}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not isinstance(result, dict):
        raise InputInvalid(f"Release {row.digest[:12]}'s settings migration returned no object.")
    return result


def check_settings(
    settings: Settings, row: Release, values: dict[str, Any], client: str
) -> dict[str, Any]:
    """The settings ``client`` runs ``row`` with: ``values`` when the release accepts them, else
    what its migration makes of them; raise ``InputInvalid`` naming the refused fields."""
    problems = settings_problems(row, values)
    if not problems:
        return values
    if row.manifest.get("migration"):
        migrated = migrate_settings(settings, row, values)
        problems = settings_problems(row, migrated)
        if not problems:
            return migrated
    raise InputInvalid(
        f"Release {row.digest[:12]} ({row.workflow} {row.workflow_version}) does not accept "
        f"the settings of client '{client}' and declares no migration for them: "
        + "; ".join(problems)
    )


def release_for_activation(
    settings: Settings, session: Session, workflow: str, ref: str | None, current: int | None
) -> Release:
    """The release an activation pins: ``ref`` when given, else the one it is pinned to, else
    the newest release; a workflow without any gets one made from the files on disk."""
    if ref is not None:
        return find_release(session, workflow, ref)
    if current is not None:
        row = session.get(Release, current)
        if row is not None:
            return row
    latest = session.scalar(
        select(Release).where(Release.workflow == workflow).order_by(Release.id.desc()).limit(1)
    )
    if latest is not None:
        return latest
    # recorded in the activation's own transaction; its audit entry names the release
    made = _make(settings, session, workflow, "worktree", "activation")
    row = session.get(Release, made.id)
    if row is None:  # pragma: no cover - added to this session just above
        raise NotFound(f"Release {made.short} vanished.")
    return row


__all__ = [
    "MIGRATION_FUNCTION",
    "PinView",
    "ReleaseView",
    "check_settings",
    "create_release",
    "find_release",
    "list_releases",
    "migrate_settings",
    "pinned_clients",
    "pins",
    "release_for_activation",
    "settings_problems",
    "view",
]
