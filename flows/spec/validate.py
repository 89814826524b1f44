"""Static checks of a workflow spec: schema and node catalog together, every problem at once.

Each problem is located (``source:line: location``) and says how to fix it. A document that
fails the schema is still checked against the catalog (see :mod:`flows.spec.salvage`), so one
pass lists an unknown key and an unknown node kind alike.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agency.errors import NotFound, SpecInvalid
from blocks.kinds import CREDENTIAL_KINDS
from flows.spec.credentials import ALTERNATIVE_KINDS, bindings_for
from flows.spec.model import SpecNode, WorkflowSpec, load_document, schema_problems
from flows.spec.problems import Loc, Problem, render_all
from flows.spec.salvage import salvage
from flows.spec.templates import ROOTS, TemplateSyntaxError, is_template, references
from nodes.catalog import get_node

NODE_FIELDS = ("output", "status", "error")
MAPPED_NODE_FIELDS = ("output", "status", "failed", "succeeded")


def normalise_params(params: dict[str, Any], input_model: type[BaseModel]) -> dict[str, Any]:
    """Accept DESIGN's ``auth: {credential: crm}`` shorthand for a ``credential`` field."""
    params = dict(params)
    auth = params.get("auth")
    if (
        isinstance(auth, dict)
        and set(auth) == {"credential"}
        and "auth" not in input_model.model_fields
        and "credential" in input_model.model_fields
    ):
        params.pop("auth")
        params.setdefault("credential", auth["credential"])
    return params


def topological_order(spec: WorkflowSpec) -> tuple[list[str], list[str]]:
    """Node ids in dependency order, and the ids caught in a cycle (empty when acyclic)."""
    ids = [n.id for n in spec.nodes]
    indegree = {i: 0 for i in ids}
    children: dict[str, list[str]] = {i: [] for i in ids}
    for edge in spec.edges:
        if edge.source in indegree and edge.to in indegree:
            indegree[edge.to] += 1
            children[edge.source].append(edge.to)
    ready = [i for i in ids if indegree[i] == 0]
    order: list[str] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for child in children[current]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order, [i for i in ids if i not in order]


def ancestors(spec: WorkflowSpec) -> dict[str, set[str]]:
    """For each node id, every node id upstream of it."""
    parents: dict[str, set[str]] = {n.id: set() for n in spec.nodes}
    for edge in spec.edges:
        if edge.to in parents and edge.source in parents:
            parents[edge.to].add(edge.source)
    result: dict[str, set[str]] = {}

    def walk(node_id: str, seen: set[str]) -> set[str]:
        if node_id in result:
            return result[node_id]
        found: set[str] = set()
        for parent in parents[node_id]:
            if parent not in seen:
                found |= {parent} | walk(parent, seen | {parent})
        result[node_id] = found
        return found

    for node_id in parents:
        walk(node_id, {node_id})
    return result


class _Checker:
    """Collects every catalog problem of one spec (fields ``None`` were salvaged: skipped)."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.problems: list[Problem] = []
        self.mapped = {n.id for n in spec.nodes if n.map is not None}

    def add(self, loc: Loc, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(loc, message, hint))

    def check_refs(
        self,
        loc: Loc,
        value: Any,
        node_id: str | None,
        upstream: set[str],
        mapped: bool,
        expression: bool = False,
    ) -> None:
        try:
            paths = references(value, expression=expression)
        except TemplateSyntaxError as exc:
            self.add(loc, f"template syntax error: {exc.message}", "close every {{ and {%")
            return
        inputs = self.spec.inputs if isinstance(self.spec.inputs, dict) else {}
        input_props = set((inputs.get("properties") or {}).keys())
        ids = {n.id for n in self.spec.nodes}
        for path in paths:
            ref, root = ".".join(path), path[0]
            if root not in ROOTS:
                self.add(
                    loc, f"bad template reference '{ref}'", "use inputs, nodes.<id>, item or client"
                )
            elif root == "item" and not mapped:
                self.add(
                    loc,
                    "bad template reference 'item': only a node with `map` has an item",
                    "add `map:` to the node or use nodes.<id>.output",
                )
            elif root == "inputs" and len(path) > 1 and input_props and path[1] not in input_props:
                self.add(
                    loc,
                    f"bad template reference '{ref}': inputs has no '{path[1]}'",
                    f"declare it under inputs.properties (known: {', '.join(sorted(input_props))})",
                )
            elif root == "nodes":
                self.check_node_ref(loc, path, node_id, upstream, ids)

    def check_node_ref(
        self,
        loc: Loc,
        path: tuple[str, ...],
        node_id: str | None,
        upstream: set[str],
        ids: set[str],
    ) -> None:
        ref = ".".join(path)
        target = path[1] if len(path) > 1 else ""
        if target not in ids:
            self.add(
                loc,
                f"bad template reference '{ref}': no node '{target}'",
                f"known nodes: {', '.join(sorted(i for i in ids if i))}",
            )
        elif target not in upstream:
            where = repr(node_id) if node_id else "this edge"
            self.add(
                loc,
                f"bad template reference '{ref}': node '{target}' is not upstream of {where}",
                f"add an edge from {target} (directly or through other nodes)",
            )
        elif len(path) > 2:
            fields = MAPPED_NODE_FIELDS if target in self.mapped else NODE_FIELDS
            if path[2] not in fields:
                self.add(
                    loc,
                    f"bad template reference '{ref}'",
                    "use " + ", ".join(f"nodes.{target}.{f}" for f in fields),
                )

    def run(self) -> list[Problem]:
        spec = self.spec
        seen: set[str] = set()
        for i, node in enumerate(spec.nodes):
            if node.id is not None and node.id in seen:
                self.add(("nodes", i, "id"), f"duplicate node id '{node.id}'", "make ids unique")
            seen.add(node.id)
        _, cyclic = topological_order(spec)
        if cyclic:
            self.add(
                ("edges",),
                f"cycle between nodes: {', '.join(cyclic)}",
                "a spec is a DAG: remove one edge of the cycle",
            )
        ids = {n.id for n in spec.nodes if n.id is not None}
        for j, edge in enumerate(spec.edges):
            for end, value in (("from", edge.source), ("to", edge.to)):
                if value is not None and value not in ids:
                    self.add(
                        ("edges", j, end),
                        f"dangling edge: no node '{value}'",
                        f"known nodes: {', '.join(sorted(ids))}",
                    )
        ups = ancestors(spec)
        for j, edge in enumerate(spec.edges):
            if isinstance(edge.when, str) and edge.source in ids:
                upstream = ups.get(edge.source, set()) | {edge.source}
                self.check_refs(("edges", j, "when"), edge.when, None, upstream, False, True)
        for alias, binding in spec.credentials.items():
            if binding.kind is not None and binding.kind not in CREDENTIAL_KINDS:
                self.add(
                    ("credentials", alias, "kind"),
                    f"unknown credential kind '{binding.kind}'",
                    f"known kinds: {', '.join(sorted(CREDENTIAL_KINDS))}",
                )
        for i, node in enumerate(spec.nodes):
            if node.node is not None:
                self.check_node(i, node, ups.get(node.id, set()))
        return self.problems

    def check_node(self, i: int, node: SpecNode, upstream: set[str]) -> None:
        try:
            entry = get_node(node.node)
        except NotFound as exc:
            message, _, known = str(exc).rstrip(".").partition(". ")
            self.add(("nodes", i, "node"), message, known or None)
            return
        model = entry.input_model
        params = normalise_params(node.params or {}, model)
        fields = set(model.model_fields) - {"client"}
        for name in params:
            if name not in fields:
                self.add(
                    ("nodes", i, "params", name),
                    f"unknown param '{name}' for node '{node.node}'",
                    f"known: {', '.join(sorted(fields))}",
                )
        credential_problem = self.check_credential(i, node, params)
        for name, field in model.model_fields.items():
            if name in ("client", "credential") or not field.is_required() or name in params:
                continue
            self.add(
                ("nodes", i, "params"),
                f"missing param '{name}' for node '{node.node}'",
                f"add params.{name} ({field.description or 'see docs/nodes.md'})",
            )
        if isinstance(node.map, str):
            self.check_refs(("nodes", i, "map"), node.map, node.id, upstream, False)
        for name, value in params.items():
            loc = ("nodes", i, "params", name)
            self.check_refs(loc, value, node.id, upstream, node.map is not None)
        static = not any(is_template(v) or isinstance(v, dict | list) for v in params.values())
        if static and not credential_problem:
            self.check_static(i, model, params)

    def check_credential(self, i: int, node: SpecNode, params: dict[str, Any]) -> bool:
        """Report an unbindable credential; True when there was a problem."""
        entry = get_node(node.node)
        kind = entry.credential_kind
        if kind is None or "credential" not in entry.input_model.model_fields:
            return False
        required = entry.input_model.model_fields["credential"].is_required()
        alias = params.get("credential")
        kinds = (kind, *ALTERNATIVE_KINDS.get(node.node, ()))
        if alias is None:
            if not required:
                return False
            candidates = bindings_for(self.spec, kinds)
            if len(candidates) == 1:
                return False
            hint = (
                f"name one of {', '.join(sorted(candidates))} in params.credential"
                if candidates
                else f"declare one under `credentials:` as <alias>: {{kind: {kind}}}"
            )
            self.add(
                ("nodes", i, "params"), f"missing param 'credential' for node '{node.node}'", hint
            )
            return True
        if not isinstance(alias, str) or is_template(alias):
            return False
        binding = self.spec.credentials.get(alias)
        if binding is None:
            self.add(
                ("nodes", i, "params", "credential"),
                f"undeclared credential '{alias}'",
                f"add it under `credentials:` as {alias}: {{kind: {kind}}} "
                f"(the client's {kind} credential named default) or {{kind: {kind}, name: ...}}",
            )
            return True
        if binding.kind is not None and binding.kind not in kinds:
            self.add(
                ("nodes", i, "params", "credential"),
                f"credential '{alias}' is a {binding.kind}, node '{node.node}' needs a {kind}",
                f"bind a {kind} credential under another alias",
            )
            return True
        return False

    def check_static(self, i: int, model: type[BaseModel], params: dict[str, Any]) -> None:
        try:
            model.model_validate({**params, "client": "validation"})
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                if err["type"] in ("missing", "extra_forbidden"):
                    continue  # reported above with better wording
                hint = f"see docs/nodes.md for the params of '{self.spec.nodes[i].node}'"
                self.add(("nodes", i, "params", *err["loc"]), err["msg"], hint)


def spec_problems(spec: WorkflowSpec) -> list[Problem]:
    """Every catalog problem of a schema-valid (or salvaged) spec, unrendered."""
    return _Checker(spec).run()


def check_spec(
    spec: WorkflowSpec, root: yaml.Node | None = None, source: str = "<spec>"
) -> list[str]:
    """Every problem in ``spec`` as ``source:line: location: message — hint`` (empty if valid)."""
    return render_all(spec_problems(spec), source, root)


def data_problems(data: dict[str, Any]) -> tuple[WorkflowSpec | None, list[Problem]]:
    """The spec in ``data`` (None when it has problems) and every problem, schema and catalog."""
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        return None, schema_problems(exc) + spec_problems(salvage(data))
    problems = spec_problems(spec)
    return (None if problems else spec), problems


def check_text(text: str, source: str = "<spec>") -> tuple[WorkflowSpec | None, list[str]]:
    """Parse and check spec text: the spec (None if any problem) and every problem, rendered."""
    try:
        data, root = load_document(text, source)
    except SpecInvalid as exc:
        return None, exc.problems
    spec, problems = data_problems(data)
    return spec, render_all(problems, source, root)


def ensure_valid(
    spec: WorkflowSpec, root: yaml.Node | None = None, source: str = "<spec>"
) -> WorkflowSpec:
    """Return ``spec`` or raise ``SpecInvalid`` with all its problems."""
    problems = check_spec(spec, root, source)
    if problems:
        raise SpecInvalid(problems)
    return spec


def ensure_valid_text(text: str, source: str = "<spec>") -> WorkflowSpec:
    """Parse and check spec text; raise ``SpecInvalid`` with every problem."""
    spec, problems = check_text(text, source)
    if spec is None:
        raise SpecInvalid(problems)
    return spec


__all__ = [
    "ancestors",
    "check_spec",
    "check_text",
    "data_problems",
    "ensure_valid",
    "ensure_valid_text",
    "normalise_params",
    "spec_problems",
    "topological_order",
]
