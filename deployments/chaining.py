"""Chaining: one activation starts when another activation of the same client completes.

A chain is a Prefect automation (what a ``DeploymentEventTrigger`` becomes): on the event
``prefect.flow-run.Completed`` related to the upstream deployment, run the downstream deployment
with ``event = {"upstream_flow_run_id": <id>, "upstream_workflow": <slug>}``. The service layer
only ever passes two deployments of one client, so a client cannot chain to another's workflow.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

UPSTREAM_RUN_ID = "{{ event.resource.id | replace('prefect.flow-run.', '') }}"


def chain_name(client: str, upstream: str, downstream: str) -> str:
    """Automation name ``chain:<client>:<upstream>-><downstream>``."""
    return f"chain:{client}:{upstream}->{downstream}"


def chain_automation(
    client: str,
    upstream: str,
    upstream_deployment: UUID,
    downstream: str,
    downstream_deployment: UUID,
) -> AutomationCore:
    """The automation that starts ``downstream`` after each completed run of ``upstream``."""
    return AutomationCore(
        name=chain_name(client, upstream, downstream),
        description=f"Start {downstream}/{client} when {upstream}/{client} completes.",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Completed"},
            match_related={
                "prefect.resource.id": f"prefect.deployment.{upstream_deployment}",
                "prefect.resource.role": "deployment",
            },
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=downstream_deployment,
                parameters={
                    "event": {
                        "upstream_flow_run_id": UPSTREAM_RUN_ID,
                        "upstream_workflow": upstream,
                    }
                },
            )
        ],
    )


def unchain(client: str, upstream: str, downstream: str) -> int:
    """Delete the chain's automation(s); return how many were removed."""
    with get_client(sync_client=True) as api:
        found = api.read_automations_by_name(chain_name(client, upstream, downstream))
        for automation in found:
            api.delete_automation(automation.id)
    return len(found)


def chain(
    client: str,
    upstream: str,
    upstream_deployment: UUID,
    downstream: str,
    downstream_deployment: UUID,
) -> UUID:
    """Create or replace the chain ``upstream`` → ``downstream`` for one client; return its id."""
    unchain(client, upstream, downstream)
    automation = chain_automation(
        client, upstream, upstream_deployment, downstream, downstream_deployment
    )
    with get_client(sync_client=True) as api:
        return api.create_automation(automation)


def unchain_client(client: str) -> int:
    """Delete every chain automation of ``client``; return how many were removed."""
    prefix = f"chain:{client}:"
    with get_client(sync_client=True) as api:
        found = [a for a in api.read_automations() if a.name.startswith(prefix)]
        for automation in found:
            api.delete_automation(automation.id)
    return len(found)
