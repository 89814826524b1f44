"""The outline of a workflow: its steps and the edges between them, as the portal draws it.

A prebuilt flow declares its outline in its manifest; a spec workflow's outline is read from the
spec (:func:`spec_outline`). Each step names the task its runs carry, so a run's task runs can
be laid on the picture: for a prebuilt flow the node kind (``http_request`` runs are named
``http_request-0``, ``http_request-1``...), for a spec the node id (``enrich``, ``enrich[3]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from flows.spec.model import WorkflowSpec

#: when an edge is taken: after the step completed, failed (after its retries), or either
EdgeOutcome = Literal["completed", "failed", "always"]
#: what may follow a task name in a task run's name: Prefect's ``-<key>``, a fan-out's
#: ``[<index>]`` or the spec runner's ``.failure`` record
_NAME_SUFFIXES = ("-", "[", ".")


class OutlineStep(BaseModel):
    """One step: what it does in words, and the task whose runs it stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", description="Step id in edges.")
    title: str = Field(min_length=1, description="What the step does, in the client's words.")
    task: str = Field(
        min_length=1,
        description="Task run name the step's runs carry: the node kind (prebuilt flows) or "
        "the node id (specs).",
    )


class OutlineEdge(BaseModel):
    """``from`` → ``to``, taken on ``on`` (default: completed); ``label`` says when, in words."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str = Field(alias="from")
    to: str
    on: EdgeOutcome = "completed"
    label: str | None = None


class Outline(BaseModel):
    """Steps and edges; every edge names known steps and every step its own task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[OutlineStep, ...] = Field(min_length=1)
    edges: tuple[OutlineEdge, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Outline:
        ids = [s.id for s in self.steps]
        problems = [f"step '{i}' is declared twice" for i in sorted(set(ids)) if ids.count(i) > 1]
        tasks = [s.task for s in self.steps]
        problems += [
            f"task '{t}' belongs to two steps (a task's runs can show on one step only)"
            for t in sorted(set(tasks))
            if tasks.count(t) > 1
        ]
        known = ", ".join(ids)
        for edge in self.edges:
            for end in (edge.source, edge.to):
                if end not in ids:
                    problems.append(
                        f"edge {edge.source} → {edge.to} names unknown step '{end}' "
                        f"(known steps: {known})"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def step_of(self, task_run_name: str) -> str | None:
        """The id of the step a task run belongs to, by its name; ``None`` for none."""
        for step in self.steps:
            if task_run_name == step.task or any(
                task_run_name.startswith(step.task + s) for s in _NAME_SUFFIXES
            ):
                return step.id
        return None


def chain(*steps: str) -> tuple[OutlineEdge, ...]:
    """Edges running through ``steps`` in order: ``chain("a", "b", "c")`` is a → b → c."""
    return tuple(OutlineEdge(source=a, to=b) for a, b in zip(steps, steps[1:], strict=False))


def spec_outline(spec: WorkflowSpec) -> Outline:
    """The outline of a spec: one step per node (task run named by the node id), its edges with
    their outcome and condition."""
    steps = tuple(
        OutlineStep(
            id=node.id,
            title=node.description or node.id.replace("_", " ").capitalize(),
            task=node.id,
        )
        for node in spec.nodes
    )
    edges = tuple(
        OutlineEdge(
            source=edge.source,
            to=edge.to,
            on=edge.on,
            label=" · ".join(
                part
                for part in (
                    {"failed": "if it fails", "always": "always"}.get(edge.on),
                    f"if {edge.when}" if edge.when else None,
                )
                if part
            )
            or None,
        )
        for edge in spec.edges
    )
    return Outline(steps=steps, edges=edges)


__all__ = ["EdgeOutcome", "Outline", "OutlineEdge", "OutlineStep", "chain", "spec_outline"]
