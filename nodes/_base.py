"""Shared node machinery: input/output base models, the default task policy and ``NodeSpec``.

A node is a module-level Prefect task named by its kind that takes one input model and returns
one output model::

    class PingInput(NodeInput):
        url: str

    class PingOutput(NodeOutput):
        status: int

    @node_task("ping")
    def ping(params: PingInput) -> PingOutput: ...

Every node retries ``DEFAULT_RETRIES`` times with exponential backoff and jitter, but only when
the failure is a ``TransientNodeError``; anything else fails after one attempt. A connection the
egress guard refuses (``EgressRefused``, permanent) is also written to the audit log with the
client and the workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict, Field

from agency.egress import EgressRefused, client_scope
from agency.errors import PermanentNodeError, SecretStoreUnavailable, TransientNodeError
from blocks import CredentialModel, load_credential
from blocks.kinds import OAUTH_KINDS
from blocks.oauth import oauth_credential

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_SECONDS = 2.0  # delays 2 s, 4 s, 8 s before jitter
DEFAULT_JITTER_FACTOR = 0.5
DEFAULT_TIMEOUT_SECONDS = 300.0

InputT = TypeVar("InputT", bound="NodeInput")
OutputT = TypeVar("OutputT", bound="NodeOutput")
CredentialT = TypeVar("CredentialT", bound=CredentialModel)


class NodeInput(BaseModel):
    """Base of every node input: the client the run works for. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    client: str = Field(title="Client", description="Slug of the client this run works for.")


class CredentialInput(NodeInput):
    """Input of a node that needs a credential: its *name*, resolved inside the task."""

    credential: str = Field(
        title="Credential",
        description="Name of the client's credential to use (a reference, never a value).",
    )


class NodeOutput(BaseModel):
    """Base of every node output (JSON-serialisable)."""

    model_config = ConfigDict(extra="forbid")


def failure_exception(state: State[Any]) -> BaseException | None:
    """The exception a failed state carries, if any.

    Prefect 3.9 hands ``retry_condition_fn`` a ``Failed`` state whose ``data`` is the raised
    exception; a task that returned a failed state instead carries it as a result.
    """
    if isinstance(state.data, BaseException):
        return state.data
    try:
        result = state.result(raise_on_failure=False)
    except Exception:
        return None
    return result if isinstance(result, BaseException) else None


def retry_on_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` for nodes: retry only a ``TransientNodeError``."""
    return isinstance(failure_exception(state), TransientNodeError)


def node_task(
    kind: str, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> Callable[[Callable[[InputT], OutputT]], Task[[InputT], OutputT]]:
    """Make a function a node task named ``kind`` with the default retry policy and timeout.

    Results are never cached: nodes have side effects (a sent email must not be "replayed"
    from cache when the same inputs recur). Override per call site with ``.with_options()``.

    ``timeout_seconds`` is the node's documented upper bound (``task.node_timeout_seconds``),
    enforced by the node itself: every node bounds its own I/O with a timeout input (and
    ``approve`` its wait). It is deliberately not Prefect's task timeout, which cannot interrupt
    a blocking call in a worker thread, logs a warning per ``.submit()``, and cost ~20 % of a
    trivial node's run time in ``benchmarks/node_overhead``; pass it with ``.with_options()``
    where a hard Prefect timeout is wanted.
    """

    def decorate(fn: Callable[[InputT], OutputT]) -> Task[[InputT], OutputT]:
        @wraps(fn)
        def audited(params: InputT) -> OutputT:
            try:
                with client_scope(params.client):  # the client's own egress allowances apply
                    return fn(params)
            except EgressRefused as exc:
                _audit_refusal(params.client, exc)
                raise

        node = task(
            audited,
            name=kind,
            retries=DEFAULT_RETRIES,
            retry_delay_seconds=exponential_backoff(DEFAULT_BACKOFF_SECONDS),
            retry_jitter_factor=DEFAULT_JITTER_FACTOR,
            retry_condition_fn=retry_on_transient,
            cache_policy=NO_CACHE,
        )
        node.node_timeout_seconds = timeout_seconds  # type: ignore[attr-defined]
        return node

    return decorate


def _audit_refusal(client: str, error: EgressRefused) -> None:
    """Put a refused connection in the audit log with client and workflow (best effort)."""
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    from agency.db import record_egress_refusal
    from agency.settings import get_settings

    try:
        record_egress_refusal(
            get_settings().platform_database_url,
            client=client,
            workflow=current_workflow(),
            flow_run_id=flow_run.id,
            error=error,
        )
    except Exception as exc:  # the refusal itself must reach the run, whatever the audit does
        get_run_logger().warning(
            "Could not audit the refused connection to %s: %s", error.host, type(exc).__name__
        )


def credential_ref(ref: str, default_kind: str) -> tuple[str, str]:
    """Split a node's credential reference: ``name`` (the node's own kind) or ``kind/name``
    (another kind the node accepts, e.g. ``google/default`` for ``send_email``)."""
    kind, sep, name = ref.partition("/")
    return (kind, name) if sep else (default_kind, ref)


def resolve_credential(
    client: str,
    kind: str,
    name: str,
    model: type[CredentialT] | tuple[type[CredentialModel], ...],
) -> CredentialT:
    """Load the client's ``kind`` credential named ``name`` (``name`` may be ``kind/name``).

    A connected account (an OAuth kind) comes with a fresh access token, refreshed once across
    runs when it is about to expire. Raises ``CredentialMissing`` (fails once) when it is absent,
    ``CredentialInvalid`` when a connection must be reconnected, and ``TransientNodeError`` when
    the secret store or the provider cannot be reached right now.
    """
    kind, name = credential_ref(name, kind)
    try:
        if kind in OAUTH_KINDS:
            credential: CredentialModel = oauth_credential(client, kind, name)
        else:
            credential = load_credential(client, kind, name)
    except SecretStoreUnavailable as exc:
        raise TransientNodeError(str(exc)) from exc
    if not isinstance(credential, model):
        wanted = (
            model.__name__ if isinstance(model, type) else " or ".join(m.__name__ for m in model)
        )
        raise PermanentNodeError(
            f"Credential '{name}' of client '{client}' is a {type(credential).__name__}, "
            f"not a {wanted}."
        )
    return credential  # type: ignore[return-value]


def current_workflow() -> str | None:
    """The workflow slug of the current flow run: its ``workflow:<slug>`` tag (set on client
    deployments), else the flow's name; None outside a flow run."""
    from prefect.runtime import flow_run

    tag = next((t for t in flow_run.tags or [] if t.startswith("workflow:")), None)
    return tag.partition(":")[2] if tag else flow_run.flow_name


@dataclass(frozen=True)
class NodeSpec:
    """What the spec runner, the portal and the NL drafter know about one node."""

    kind: str
    title: str
    description: str
    input_model: type[NodeInput]
    output_model: type[NodeOutput]
    credential_kind: str | None
    task: Task[..., Any]
    example: dict[str, Any] | None = None  # valid input params, shown in docs/nodes.md

    @property
    def input_schema(self) -> dict[str, Any]:
        """JSON schema of the input model."""
        return self.input_model.model_json_schema()

    @property
    def output_schema(self) -> dict[str, Any]:
        """JSON schema of the output model."""
        return self.output_model.model_json_schema()

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary: kind, title, description, schemas, credential kind."""
        return {
            "kind": self.kind,
            "title": self.title,
            "description": self.description,
            "credential_kind": self.credential_kind,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
        }
