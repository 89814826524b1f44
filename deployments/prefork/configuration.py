"""Job configuration and job variables of the ``agency-prefork`` worker type."""

from __future__ import annotations

from pathlib import Path

from prefect.client.schemas.objects import Flow
from prefect.workers.base import BaseJobConfiguration, BaseVariables
from pydantic import Field

#: Project modules a template imports before forking, beside Prefect and its flow engine.
DEFAULT_PRELOAD: list[str] = ["flows.catalog", "nodes.catalog"]


class PreforkJobConfiguration(BaseJobConfiguration):
    """What one flow run needs from the pool: its environment, directory and template modules."""

    working_dir: Path | None = Field(default=None)
    preload: list[str] = Field(default_factory=lambda: list(DEFAULT_PRELOAD))
    termination_grace_seconds: float = Field(default=10)

    @property
    def flow(self) -> Flow | None:
        """The run's flow as read from the API by ``prepare_for_flow_run`` (None before)."""
        flow = self._related_objects.get("flow")
        return flow if isinstance(flow, Flow) else None


class PreforkVariables(BaseVariables):
    """Job variables a deployment may set for the ``agency-prefork`` worker type."""

    working_dir: Path | None = Field(
        default=None,
        title="Working Directory",
        description=(
            "Directory the flow run starts in (before the deployment's pull steps run). "
            "Defaults to the worker's own directory."
        ),
    )
    preload: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PRELOAD),
        description=(
            "Modules the warm template imports once; each flow run is forked from it. Runs "
            "with different lists get different templates."
        ),
    )
    termination_grace_seconds: float = Field(
        default=10,
        ge=0,
        description="Seconds a cancelled run gets after SIGTERM before SIGKILL.",
    )
