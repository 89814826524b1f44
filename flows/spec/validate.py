"""Static checks of a workflow spec against the node catalog: one message per problem."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agency.errors import NotFound, SpecInvalid
from flows.spec.model import WorkflowSpec, _line_of
from flows.spec.templates import ROOTS, TemplateSyntaxError, is_template, references
from nodes.catalog import get_node

# nodes that accept another credential kind besides their catalog one
ALTERNATIVE_KINDS: dict[str, tuple[str, ...]] = {"notify": ("webhook_signing",)}


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
    def __init__(self, spec: WorkflowSpec, root: yaml.Node | None, source: str) -> None:
        self.spec, self.root, self.source = spec, root, source
        self.problems: list[str] = []

    def add(self, loc: tuple[Any, ...], message: str) -> None:
        from flows.spec.model import format_loc

        line = _line_of(self.root, loc) or 1
        self.problems.append(f"{self.source}:{line}: {format_loc(loc)}: {message}")

    def check_refs(
        self,
        loc: tuple[Any, ...],
        value: Any,
        node_id: str | None,
        upstream: set[str],
        mapped: bool,
        expression: bool = False,
    ) -> None:
        try:
            paths = references(value, expression=expression)
        except TemplateSyntaxError as exc:
            self.add(loc, f"template syntax error: {exc.message}")
            return
        input_props = set((self.spec.inputs.get("properties") or {}).keys())
        for path in paths:
            root = path[0]
            if root not in ROOTS:
                self.add(
                    loc,
                    f"bad template reference '{'.'.join(path)}': "
                    f"use inputs, nodes.<id>.output, item or client",
                )
            elif root == "item" and not mapped:
                self.add(loc, "bad template reference 'item': only a node with `map` has an item")
            elif root == "inputs" and len(path) > 1 and input_props and path[1] not in input_props:
                self.add(
                    loc, f"bad template reference '{'.'.join(path)}': inputs has no '{path[1]}'"
                )
            elif root == "nodes":
                if len(path) < 2 or path[1] not in {n.id for n in self.spec.nodes}:
                    target = path[1] if len(path) > 1 else ""
                    self.add(loc, f"bad template reference '{'.'.join(path)}': no node '{target}'")
                elif path[1] not in upstream:
                    self.add(
                        loc,
                        f"bad template reference '{'.'.join(path)}': node "
                        f"'{path[1]}' is not upstream of "
                        f"{repr(node_id) if node_id else 'this edge'}",
                    )
                elif len(path) > 2 and path[2] not in ("output", "status"):
                    self.add(
                        loc,
                        f"bad template reference '{'.'.join(path)}': "
                        f"use nodes.{path[1]}.output or nodes.{path[1]}.status",
                    )

    def run(self) -> list[str]:
        spec = self.spec
        seen: set[str] = set()
        for i, node in enumerate(spec.nodes):
            if node.id in seen:
                self.add(("nodes", i, "id"), f"duplicate node id '{node.id}'")
            seen.add(node.id)
        order, cyclic = topological_order(spec)
        if cyclic:
            self.add(("edges",), f"cycle between nodes: {', '.join(cyclic)}")
        ids = {n.id for n in spec.nodes}
        for j, edge in enumerate(spec.edges):
            for end, value in (("from", edge.source), ("to", edge.to)):
                if value not in ids:
                    self.add(("edges", j, end), f"dangling edge: no node '{value}'")
        ups = ancestors(spec)
        for j, edge in enumerate(spec.edges):
            if edge.when and edge.source in ids:
                self.check_refs(
                    ("edges", j, "when"),
                    edge.when,
                    None,
                    ups.get(edge.source, set()) | {edge.source},
                    False,
                    expression=True,
                )
        for kind in set(spec.credentials.values()):
            from blocks.kinds import CREDENTIAL_KINDS

            if kind not in CREDENTIAL_KINDS:
                self.add(("credentials",), f"unknown credential kind '{kind}'")
        for i, node in enumerate(spec.nodes):
            self.check_node(i, node.id, ups.get(node.id, set()))
        return self.problems

    def check_node(self, i: int, node_id: str, upstream: set[str]) -> None:
        node = self.spec.nodes[i]
        try:
            entry = get_node(node.node)
        except NotFound as exc:
            self.add(("nodes", i, "node"), str(exc).rstrip("."))
            return
        model = entry.input_model
        params = normalise_params(node.params, model)
        fields = set(model.model_fields) - {"client"}
        for name in params:
            if name not in fields:
                self.add(
                    ("nodes", i, "params", name),
                    f"unknown param '{name}' for node '{node.node}' "
                    f"(known: {', '.join(sorted(fields))})",
                )
        for name, field in model.model_fields.items():
            if name != "client" and field.is_required() and name not in params:
                self.add(("nodes", i, "params"), f"missing param '{name}' for node '{node.node}'")
        credential = params.get("credential")
        if entry.credential_kind and isinstance(credential, str) and not is_template(credential):
            declared = self.spec.credentials.get(credential)
            if declared is None:
                self.add(
                    ("nodes", i, "params", "credential"),
                    f"undeclared credential '{credential}': add it under `credentials:` "
                    f"as {credential}: {entry.credential_kind}",
                )
            elif declared != entry.credential_kind and declared not in ALTERNATIVE_KINDS.get(
                node.node, ()
            ):
                self.add(
                    ("nodes", i, "params", "credential"),
                    f"credential '{credential}' is a {declared}, node '{node.node}' "
                    f"needs a {entry.credential_kind}",
                )
        if node.map is not None:
            self.check_refs(("nodes", i, "map"), node.map, node_id, upstream, False)
        for name, value in params.items():
            self.check_refs(
                ("nodes", i, "params", name), value, node_id, upstream, node.map is not None
            )
        if not any(is_template(v) or isinstance(v, dict | list) for v in params.values()):
            self.check_static(i, model, params)

    def check_static(self, i: int, model: type[BaseModel], params: dict[str, Any]) -> None:
        try:
            model.model_validate({**params, "client": "validation"})
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                if err["type"] == "missing" or err["type"] == "extra_forbidden":
                    continue  # reported above with better wording
                self.add(("nodes", i, "params", *err["loc"]), err["msg"])


def check_spec(
    spec: WorkflowSpec, root: yaml.Node | None = None, source: str = "<spec>"
) -> list[str]:
    """Every problem in ``spec`` as ``source:line: location: message`` (empty when valid)."""
    problems = _Checker(spec, root, source).run()

    def line(problem: str) -> int:
        rest = problem[len(source) + 1 :]
        head = rest.split(":", 1)[0]
        return int(head) if head.isdigit() else 0

    return sorted(problems, key=line)


def ensure_valid(
    spec: WorkflowSpec, root: yaml.Node | None = None, source: str = "<spec>"
) -> WorkflowSpec:
    """Return ``spec`` or raise ``SpecInvalid`` with all its problems."""
    problems = check_spec(spec, root, source)
    if problems:
        raise SpecInvalid(problems)
    return spec


__all__: Iterable[str] = [
    "ancestors",
    "check_spec",
    "ensure_valid",
    "normalise_params",
    "topological_order",
]
