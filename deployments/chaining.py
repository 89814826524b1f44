"""Chaining: one activation starts when another activation of the same client completes.

A chain is a Prefect automation (what a ``DeploymentEventTrigger`` becomes): on the event
``prefect.flow-run.Completed`` related to the upstream deployment, run the downstream deployment
with ``event = {"upstream_flow_run_id": <id>, "upstream_workflow": <slug>}``. The service layer
only ever passes two deployments of one client, so a client cannot chain to another's workflow.
``services.chains`` keeps each chain as a platform record with its automation id; the helpers
below let it check, list and remove the automations (see ``reconcile_chains`` there).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

PREFIX = "chain:"
CREATED = "Created "  # then an ISO time: the age of an automation without a record
_CREATED_AT = re.compile(re.escape(CREATED) + r"(\S+)$")
UPSTREAM_RUN_ID = "{{ event.resource.id | replace('prefect.flow-run.', '') }}"


def chain_name(client: str, upstream: str, downstream: str) -> str:
    """Automation name ``chain:<client>:<upstream>-><downstream>``."""
    return f"{PREFIX}{client}:{upstream}->{downstream}"


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
        description=f"Start {downstream}/{client} when {upstream}/{client} completes. "
        f"{CREATED}{datetime.now(UTC).isoformat(timespec='seconds')}",
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
    prefix = f"{PREFIX}{client}:"
    with get_client(sync_client=True) as api:
        found = [a for a in api.read_automations() if a.name.startswith(prefix)]
        for automation in found:
            api.delete_automation(automation.id)
    return len(found)


def parse_chain_name(name: str) -> tuple[str, str, str] | None:
    """``(client, upstream, downstream)`` of a chain automation's name, or None."""
    if not name.startswith(PREFIX) or name.count(":") != 2 or "->" not in name:
        return None
    client, pair = name[len(PREFIX) :].split(":", 1)
    upstream, _, downstream = pair.partition("->")
    return (client, upstream, downstream) if client and upstream and downstream else None


def chain_exists(automation_id: UUID) -> bool:
    """Whether the automation ``automation_id`` exists in Prefect."""
    with get_client(sync_client=True) as api:
        try:
            return api.read_automation(automation_id) is not None
        except (ObjectNotFound, PrefectHTTPStatusError) as exc:
            if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 404:
                raise
            return False


def chain_automations() -> dict[UUID, tuple[str, datetime | None]]:
    """Every chain automation in Prefect: id -> (name, when it was created if it says)."""
    found: dict[UUID, tuple[str, datetime | None]] = {}
    with get_client(sync_client=True) as api:
        for automation in api.read_automations():
            if automation.name.startswith(PREFIX):
                match = _CREATED_AT.search(automation.description or "")
                created = datetime.fromisoformat(match.group(1)) if match else None
                found[automation.id] = (automation.name, created)
    return found


def delete_chain_automation(automation_id: UUID) -> bool:
    """Delete one automation by id; False when it was gone already."""
    with get_client(sync_client=True) as api:
        try:
            api.delete_automation(automation_id)
        except (ObjectNotFound, PrefectHTTPStatusError) as exc:
            if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 404:
                raise
            return False
    return True
