"""Create, update, pause, resume and remove a client's Prefect deployment ``<workflow>/<client>``.

This module speaks to Prefect only; the platform DB record and the audit log are written by
``services.activations``, which calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron

from agency.errors import NotFound
from agency.settings import Settings, get_settings
from blocks.names import check_slug
from deployments.schedules import check_cron, check_timezone
from flows.catalog import get_workflow


@dataclass(frozen=True)
class DeploymentPlan:
    """A validated activation, ready to be applied to Prefect."""

    client: str
    workflow: str
    workflow_version: str
    settings: dict[str, Any]
    cron: str | None
    timezone: str
    webhook: bool = False  # a webhook starts it: runs go to the webhook (prefork) pool
    release: str | None = None  # digest of the pinned release; None: the project directory

    @property
    def deployment_name(self) -> str:
        """Full Prefect deployment name ``<workflow>/<client>``."""
        return f"{self.workflow}/{self.client}"

    @property
    def tags(self) -> list[str]:
        return [f"client:{self.client}", f"workflow:{self.workflow}"]


def plan(
    client: str,
    workflow: str,
    settings: dict[str, Any],
    cron: str | None,
    timezone: str,
    *,
    webhook: bool = False,
    release: str | None = None,
) -> DeploymentPlan:
    """Validate everything an activation needs, touching nothing; raise ``InputInvalid``."""
    check_slug(client, "client slug")
    manifest = get_workflow(workflow)
    model = manifest.validate_settings(settings)
    check_timezone(timezone)
    if cron is not None:
        check_cron(cron)
    return DeploymentPlan(
        client=client,
        workflow=workflow,
        workflow_version=manifest.version,
        settings=model.model_dump(mode="json"),
        cron=cron,
        timezone=timezone,
        webhook=webhook,
        release=release,
    )


def activate(
    client: str,
    workflow: str,
    settings: dict[str, Any],
    cron: str | None = None,
    timezone: str = "UTC",
    *,
    paused: bool = False,
    app_settings: Settings | None = None,
) -> UUID:
    """Create or update the deployment ``<workflow>/<client>`` and return its id.

    The deployment runs on the work pool ``app_settings.pool_for(webhook=...)`` from the project
    directory, with parameters ``client`` and ``settings`` (never a secret), tags
    ``client:<slug>`` and ``workflow:<slug>``, and a cron schedule in ``timezone``.
    """
    return apply(
        plan(client, workflow, settings, cron, timezone), paused=paused, app_settings=app_settings
    )


def apply(
    deployment: DeploymentPlan, *, paused: bool = False, app_settings: Settings | None = None
) -> UUID:
    """Apply a validated plan to Prefect (upsert by name).

    A plan pinned to a release deploys from the release store: the deployment's pull steps
    fetch and enter the release, and its ``PYTHONPATH`` puts the release's packages first, so
    the run imports the release's code, never the working tree's.
    """
    app_settings = app_settings or get_settings()
    manifest = get_workflow(deployment.workflow)
    job_variables: dict[str, Any] = {}
    source = str(app_settings.project_dir)
    if deployment.release is not None:
        from deployments.releases.store import release_store

        store = release_store(app_settings)
        source = str(store.local_path(deployment.release))
        job_variables = store.job_variables(deployment.release)
    flow = Flow.from_source(source=source, entrypoint=manifest.entrypoint)
    schedules = [Cron(deployment.cron, timezone=deployment.timezone)] if deployment.cron else []
    deployment_id = flow.deploy(  # type: ignore[union-attr]
        name=deployment.client,
        work_pool_name=app_settings.pool_for(webhook=deployment.webhook),
        build=False,
        push=False,
        schedules=schedules,
        paused=paused,
        parameters={"client": deployment.client, "settings": deployment.settings},
        tags=deployment.tags,
        version=deployment.workflow_version,
        description=f"{manifest.title} for client '{deployment.client}'.",
        print_next_steps=False,
        ignore_warnings=True,
        job_variables=job_variables or None,
    )
    if deployment.release is not None:
        from prefect.client.schemas.actions import DeploymentUpdate

        with get_client(sync_client=True) as api:
            api.update_deployment(
                UUID(str(deployment_id)),
                DeploymentUpdate(pull_steps=store.pull_steps(deployment.release)),
            )
    return UUID(str(deployment_id))


def _deployment_id(workflow: str, client: str) -> UUID:
    with get_client(sync_client=True) as api:
        try:
            return api.read_deployment_by_name(f"{workflow}/{client}").id
        except ObjectNotFound:
            raise NotFound(
                f"Workflow '{workflow}' is not activated for client '{client}'."
            ) from None


def move_to_pool(deployment_id: UUID, pool: str, *, prefork: bool = False) -> None:
    """Point the deployment at work pool ``pool``; with ``prefork``, create it as an
    ``agency-prefork`` pool if missing. Runs already queued keep their pool."""
    from prefect.client.schemas.actions import DeploymentUpdate

    if prefork:
        ensure_work_pool(pool, prefork=True)
    with get_client(sync_client=True) as api:
        api.update_deployment(deployment_id, DeploymentUpdate(work_pool_name=pool))


def pause(workflow: str, client: str) -> UUID:
    """Pause the deployment: its schedule stops creating runs."""
    deployment_id = _deployment_id(workflow, client)
    with get_client(sync_client=True) as api:
        api.pause_deployment(deployment_id)
    return deployment_id


def resume(workflow: str, client: str) -> UUID:
    """Resume a paused deployment."""
    deployment_id = _deployment_id(workflow, client)
    with get_client(sync_client=True) as api:
        api.resume_deployment(deployment_id)
    return deployment_id


def deactivate(workflow: str, client: str) -> None:
    """Delete the deployment (its past runs stay visible in Prefect)."""
    deployment_id = _deployment_id(workflow, client)
    with get_client(sync_client=True) as api:
        api.delete_deployment(deployment_id)


def ensure_work_pool(name: str, *, prefork: bool = False) -> None:
    """Create the work pool ``name`` if it does not exist: a process pool, or with
    ``prefork`` an ``agency-prefork`` one."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    from deployments.prefork.worker import PreforkWorker

    worker = PreforkWorker if prefork else ProcessWorker
    with get_client(sync_client=True) as api:
        try:
            api.read_work_pool(name)
        except ObjectNotFound:
            template = worker.get_default_base_job_template()
            api.create_work_pool(
                WorkPoolCreate(name=name, type=worker.type, base_job_template=template)
            )
