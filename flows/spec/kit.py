"""Import Inngest Workflow Kit instances as workflow specs, keeping the Kit's meaning.

An instance (``packages/workflow/src/types.ts``) is ``{"name"?, "description"?, "actions":
[{"id", "kind", "name"?, "inputs"?}], "edges": [{"from", "to", "conditional"?: {"type":
"if"|"else"|"match", "ref", "value"?}}]}``; ``"$source"`` is the triggering event. Like the Kit's
engine (``graph.ts``) the import refuses an edge to or from an unknown action, a cycle, an
instance with no edge from ``$source`` and an action with no path from ``$source``.

Refs ``!ref($.event.<path>)`` read the event (the spec's ``inputs``), ``!ref($.state.<action id>
.<path>)`` an earlier action's output, and, in a conditional edge, ``!ref($.output.<path>)`` the
output of the edge's ``from`` action. A whole-value ref keeps its type; refs inside text are
substituted as text, and any other text stays literal (never a template). A conditional edge
becomes a ``when:`` condition: ``if`` → truthy, ``else`` → falsy, ``match`` → equal to ``value``.

The five stub actions, with the inputs the Kit's examples give them:

====================  ==============================================================
``log_message``       ``message`` (+ ``level``) → ``log_message``
``delay``             ``duration`` in **milliseconds** → ``delay`` (seconds = ms / 1000)
``http_request``      ``url`` (+ ``method``, ``headers``, ``body``, ``query``) → ``http_request``
``transform_data``    ``data`` (+ ``expression`` or ``template``) → ``transform``; with only
                      ``data`` it passes the data on (JMESPath ``@``)
``notify``            ``channel`` (+ ``message``) → ``notify`` through the client's
                      ``slack_webhook`` credential named like the channel (``default`` without one)
====================  ==============================================================

An action's state (``$.state.<id>``) is the node's output; for ``transform_data`` it is the
transformed value. Problems are located at the instance's own ``actions[i].inputs.<name>`` and
``edges[i]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from agency.errors import SpecInvalid
from flows.spec.model import WorkflowSpec, schema_problems
from flows.spec.problems import Loc, Problem, line_of
from flows.spec.validate import spec_problems

SOURCE = "$source"
MAX_DELAY_MS = 3_600_000
_REF = re.compile(r"!ref\((\$\.[\w.]+)\)")  # the Kit's own pattern
_WHOLE_REF = re.compile(r"^!ref\((\$\.[\w.]+)\)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class KitKind:
    """How one Kit action kind becomes a node: its node kind and Kit input → param names."""

    node: str
    inputs: dict[str, str]
    state_path: str = ""  # where in the node's output the Kit's action state lies


KIT_KINDS: dict[str, KitKind] = {
    "log_message": KitKind("log_message", {"message": "message", "level": "level"}),
    "delay": KitKind("delay", {"duration": "seconds"}),
    "http_request": KitKind(
        "http_request",
        {
            "url": "url",
            "method": "method",
            "headers": "headers",
            "body": "json_body",
            "query": "query",
        },
    ),
    "transform_data": KitKind(
        "transform",
        {"data": "data", "expression": "expression", "template": "template", "output": "output"},
        state_path=".value",
    ),
    "notify": KitKind("notify", {"channel": "credential", "message": "text", "text": "text"}),
}


class _RefError(ValueError):
    """A ref the import cannot translate."""


def _path_expr(path: str) -> str:
    """JSONPath tail ``a.b.0`` → jinja ``.a.b[0]``."""
    out = ""
    for part in (p for p in path.split(".") if p):
        if part.isdigit():
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


@dataclass
class _Import:
    """One import: the instance, its translation so far and the problems found."""

    instance: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    node_ids: dict[str, str] = field(default_factory=dict)  # action id -> node id
    kinds: dict[str, KitKind] = field(default_factory=dict)  # action id -> kit kind
    registered: set[int] = field(default_factory=set)  # actions[i] that become nodes
    action_index: list[int] = field(default_factory=list)  # node position -> actions[i]
    param_names: list[dict[str, str]] = field(default_factory=list)  # node: param -> kit input
    edge_index: list[int] = field(default_factory=list)  # spec edge position -> edges[j]
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    credential_action: dict[str, int] = field(default_factory=dict)

    def add(self, loc: Loc, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(loc, message, hint))

    # -- refs -----------------------------------------------------------------------------------

    def ref_expr(self, path: str, output_of: str | None = None) -> str:
        """The jinja expression of a Kit JSONPath (``$.event.a``, ``$.state.<id>.b``,
        ``$.output.c`` with ``output_of`` the edge's source action)."""
        head, _, rest = path[2:].partition(".")
        if head == "event":
            return "inputs" + _path_expr(rest)
        if head == "state":
            action, _, tail = rest.partition(".")
            if action not in self.node_ids:
                raise _RefError(f"!ref({path}): no action '{action}' in this workflow")
            state = self.kinds[action].state_path
            return f"nodes.{self.node_ids[action]}.output{state}{_path_expr(tail)}"
        if head == "output" and output_of is not None:
            state = self.kinds[output_of].state_path
            return f"nodes.{self.node_ids[output_of]}.output{state}{_path_expr(rest)}"
        where = "$.event, $.state or (in a conditional edge) $.output"
        raise _RefError(f"!ref({path}): refs read {where}")

    def translate(self, value: Any) -> Any:
        """A Kit input value with its refs as templates; other text stays literal."""
        if isinstance(value, dict):
            return {k: self.translate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.translate(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = _WHOLE_REF.match(value)
        if whole:
            return "{{ " + self.ref_expr(whole.group(1)) + " }}"
        out, last = "", 0
        for match in _REF.finditer(value):
            out += _literal_text(value[last : match.start()])
            out += "{{ " + self.ref_expr(match.group(1)) + " }}"
            last = match.end()
        return out + _literal_text(value[last:])

    # -- actions --------------------------------------------------------------------------------

    def action(self, i: int, action: Any) -> dict[str, Any] | None:
        loc: Loc = ("actions", i)
        if not isinstance(action, dict):
            self.add(loc, "an action must be an object with id and kind")
            return None
        if i not in self.registered:
            return None
        kind = self.kinds[str(action.get("id"))]
        action_id = str(action["id"])
        inputs = action.get("inputs") or {}
        if not isinstance(inputs, dict):
            self.add((*loc, "inputs"), "inputs must be an object")
            return None
        params: dict[str, Any] = {}
        names: dict[str, str] = {}
        for key, raw in inputs.items():
            if key not in kind.inputs:
                self.add(
                    (*loc, "inputs", key),
                    f"input '{key}' of Kit action '{action['kind']}' has no counterpart here",
                    f"known inputs: {', '.join(sorted(kind.inputs))}",
                )
                continue
            try:
                value = self.translate(raw)
            except _RefError as exc:
                self.add((*loc, "inputs", key), str(exc))
                continue
            params[kind.inputs[key]] = value
            names[kind.inputs[key]] = key
        params = self.adapt(i, action, kind, params, names)
        self.action_index.append(i)
        self.param_names.append(names)
        return {
            "id": self.node_ids[action_id],
            "node": kind.node,
            "params": params,
            "description": action.get("name") or action.get("description"),
        }

    def adapt(
        self,
        i: int,
        action: dict[str, Any],
        kind: KitKind,
        params: dict[str, Any],
        names: dict[str, str],
    ) -> dict[str, Any]:
        """Kind-specific meaning: units, defaults the Kit's stubs imply, literal messages."""
        loc: Loc = ("actions", i, "inputs")
        if kind.node == "delay" and "seconds" in params:
            ms = params["seconds"]
            if isinstance(ms, str) and ms.startswith("{{"):
                params["seconds"] = "{{ (" + ms[2:-2].strip() + ") / 1000 }}"
            elif (
                isinstance(ms, bool)
                or not isinstance(ms, int | float)
                or not 0 <= ms <= MAX_DELAY_MS
            ):
                self.add(
                    (*loc, "duration"),
                    f"duration must be 0 to {MAX_DELAY_MS} milliseconds, got {ms!r}",
                    "the Kit's delay is in milliseconds (500 = half a second)",
                )
            else:
                params["seconds"] = ms / 1000
        if kind.node == "http_request" and isinstance(params.get("method"), str):
            params["method"] = params["method"].upper()
        if kind.node == "transform" and "expression" not in params and "template" not in params:
            params["expression"] = "@"  # the stub passes its data on
        if kind.node in ("log_message", "notify"):
            field_name = "message" if kind.node == "log_message" else "text"
            default = (
                action.get("name") or f"{self.instance.get('name') or 'Workflow'}: {action['id']}"
            )
            text = params.get(field_name, default if kind.node == "notify" else None)
            if text is not None:  # the node renders its text: hand the Kit's text over as data
                params[field_name] = "{% raw %}{{ text }}{% endraw %}"
                params["context"] = {"text": text}
                names.setdefault("context", names.get(field_name, field_name))
        if kind.node == "notify":
            params["credential"] = self.channel_credential(i, params.get("credential"))
        return params

    def channel_credential(self, i: int, channel: Any) -> str:
        """The credential alias for a Kit notify channel (the client's slack webhook by name)."""
        if channel is None:
            alias, name = "notify", "default"
        elif isinstance(channel, str) and re.sub(r"[^a-z0-9_-]+", "-", channel.lower()).strip("-"):
            name = re.sub(r"[^a-z0-9_-]+", "-", channel.lower()).strip("-")
            alias = "channel_" + name.replace("-", "_")
        else:
            self.add(
                ("actions", i, "inputs", "channel"),
                f"channel must be a channel name, got {channel!r}",
            )
            return "notify"
        self.credentials[alias] = {"kind": "slack_webhook", "name": name}
        self.credential_action.setdefault(alias, i)
        return alias


def _literal_text(text: str) -> str:
    """Text that renders to itself even when it holds ``{{`` or ``{%``."""
    if "{{" in text or "{%" in text or "{#" in text:
        return "{% raw %}" + text + "{% endraw %}"
    return text


def _literal(value: Any) -> str:
    """A jinja literal of a JSON value."""
    if value is None:
        return "none"
    return json.dumps(value)


def _node_id(action_id: str, kind: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", str(action_id))
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else f"{kind}_{cleaned}"


def import_kit(
    instance: dict[str, Any],
    name: str | None = None,
    root: yaml.Node | None = None,
    source: str = "kit",
) -> WorkflowSpec:
    """Turn a Workflow Kit instance into a valid spec; raise ``SpecInvalid`` listing each problem
    located in the instance (``root``: its YAML/JSON tree, for line numbers)."""
    imp = _Import(instance)
    actions = instance.get("actions") if isinstance(instance, dict) else None
    if not isinstance(actions, list) or not actions:
        raise SpecInvalid(
            [f"{source}:1: actions: a Workflow Kit instance needs a non-empty actions list"]
        )
    for i, action in enumerate(actions):
        if not isinstance(action, dict):
            continue
        action_id, kind = action.get("id"), action.get("kind")
        if not isinstance(action_id, str | int) or str(action_id) in ("", SOURCE):
            imp.add(("actions", i, "id"), "every action needs a string id (not $source)")
            continue
        if str(action_id) in imp.node_ids:
            imp.add(
                ("actions", i, "id"), f"two actions have the id '{action_id}'", "ids must be unique"
            )
            continue
        if kind not in KIT_KINDS:
            imp.add(
                ("actions", i, "kind"),
                f"unknown Workflow Kit kind {kind!r}",
                f"supported: {', '.join(sorted(KIT_KINDS))}",
            )
            continue
        imp.node_ids[str(action_id)] = _node_id(str(action_id), kind)
        imp.kinds[str(action_id)] = KIT_KINDS[kind]
        imp.registered.add(i)
    nodes = [n for n in (imp.action(i, a) for i, a in enumerate(actions)) if n is not None]
    edges = _edges(imp, instance.get("edges"), actions)
    spec = _spec(imp, instance, name, nodes, edges)
    if imp.problems:
        raise SpecInvalid(_render(imp, source, root))
    assert spec is not None
    return spec


def _edges(imp: _Import, raw_edges: Any, actions: list[Any]) -> list[dict[str, Any]]:
    """Spec edges from the Kit's; refuses what the Kit's ``newDAG`` refuses."""
    if not isinstance(raw_edges, list):
        imp.add(("edges",), "edges must be a list, with at least one edge from $source")
        return []
    known = {str(a.get("id")) for a in actions if isinstance(a, dict)}
    starts: list[str] = []
    children: dict[str, list[str]] = {}
    edges: list[dict[str, Any]] = []
    for j, edge in enumerate(raw_edges):
        if not isinstance(edge, dict):
            imp.add(("edges", j), "an edge must be an object with from and to")
            continue
        source, target = str(edge.get("from")), str(edge.get("to"))
        bad = [end for end in (source, target) if end != SOURCE and end not in known]
        if bad or target == SOURCE:
            unknown = bad[0] if bad else SOURCE
            imp.add(
                ("edges", j), f"edge {source} -> {target} references an unknown action: {unknown}"
            )
            continue
        children.setdefault(source, []).append(target)
        if source == SOURCE:
            starts.append(target)
            if edge.get("conditional"):
                imp.add(
                    ("edges", j, "conditional"),
                    "a conditional edge from $source cannot be imported",
                )
            continue
        if source not in imp.node_ids or target not in imp.node_ids:
            continue  # the action's own problem is reported
        spec_edge: dict[str, Any] = {"from": imp.node_ids[source], "to": imp.node_ids[target]}
        if edge.get("conditional") is not None:
            try:
                spec_edge["when"] = _condition(imp, edge["conditional"], source)
            except (_RefError, ValueError) as exc:
                imp.add(("edges", j, "conditional"), str(exc))
                continue
        imp.edge_index.append(j)
        edges.append(spec_edge)
    if not starts:
        imp.add(("edges",), "no edge from $source: the workflow has no starting action")
    reached, todo = set(), list(starts)
    while todo:
        current = todo.pop()
        if current not in reached:
            reached.add(current)
            todo.extend(children.get(current, []))
    for i, action in enumerate(actions):
        if isinstance(action, dict) and str(action.get("id")) in known - reached and starts:
            imp.add(
                ("actions", i),
                f"action '{action.get('id')}' has no path from $source and would never run",
                "add an edge to it from $source or from an action that runs",
            )
    return edges


def _condition(imp: _Import, conditional: Any, source: str) -> str:
    """The ``when:`` expression of a Kit conditional edge."""
    if not isinstance(conditional, dict) or conditional.get("type") not in ("if", "else", "match"):
        raise ValueError("conditional needs type if, else or match and a ref")
    ref = conditional.get("ref")
    whole = _WHOLE_REF.match(ref) if isinstance(ref, str) else None
    if whole is None:
        raise ValueError(f"conditional ref must be one !ref($....), got {ref!r}")
    expr = imp.ref_expr(whole.group(1), output_of=source)
    kind = conditional["type"]
    if kind == "if":
        return f"({expr}) is defined and ({expr})"
    if kind == "else":
        return f"({expr}) is not defined or not ({expr})"
    return f"({expr}) is defined and ({expr}) == {_literal(conditional.get('value'))}"


def _spec(
    imp: _Import,
    instance: dict[str, Any],
    name: str | None,
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]],
) -> WorkflowSpec | None:
    slug = re.sub(r"[^a-z0-9_-]+", "-", str(name or instance.get("name") or "kit-workflow").lower())
    data = {
        "name": slug.strip("-")[:63].strip("-") or "kit-workflow",
        "description": instance.get("description"),
        "credentials": imp.credentials,
        "triggers": ["manual", "webhook"],
        "nodes": nodes or [{"id": "empty", "node": "log_message", "params": {"message": "-"}}],
        "edges": edges,
    }
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        imp.problems += [_relocate(imp, p) for p in schema_problems(exc)]
        return None
    if not imp.problems:
        imp.problems += [_relocate(imp, p) for p in spec_problems(spec)]
    return spec


def _relocate(imp: _Import, problem: Problem) -> Problem:
    """A translated spec's problem, pointed at the instance's own action, input or edge."""
    loc = problem.loc
    if loc[:1] == ("nodes",) and len(loc) > 1 and isinstance(loc[1], int):
        i = loc[1]
        where: Loc = ("actions", imp.action_index[i])
        if loc[2:3] == ("params",) and len(loc) > 3:
            where = (*where, "inputs", imp.param_names[i].get(str(loc[3]), str(loc[3])))
        elif loc[2:3] == ("params",):
            where = (*where, "inputs")
        elif loc[2:3] == ("node",):
            where = (*where, "kind")
        return Problem(where, problem.message, problem.hint)
    if loc[:1] == ("edges",) and len(loc) > 1 and isinstance(loc[1], int):
        return Problem(("edges", imp.edge_index[loc[1]]), problem.message, problem.hint)
    if loc[:1] == ("credentials",) and len(loc) > 1 and loc[1] in imp.credential_action:
        where = ("actions", imp.credential_action[str(loc[1])], "inputs", "channel")
        return Problem(where, problem.message, problem.hint)
    return Problem(loc[:1] or ("actions",), problem.message, problem.hint)


def _render(imp: _Import, source: str, root: yaml.Node | None) -> list[str]:
    """Every problem as ``source:line: location: message — hint``, in instance order."""
    keyed = [(line_of(root, p.loc) or 1, p.render(source, root)) for p in imp.problems]
    return [text for _, text in sorted(keyed, key=lambda pair: pair[0])]


def import_kit_text(text: str, source: str = "kit", name: str | None = None) -> WorkflowSpec:
    """Import a Workflow Kit instance given as JSON text; problems carry its line numbers."""
    try:
        instance = json.loads(text)
        root = yaml.compose(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecInvalid([f"{source}:1: not a JSON Workflow Kit instance: {exc}"]) from None
    if not isinstance(instance, dict):
        raise SpecInvalid([f"{source}:1: a Workflow Kit instance is a JSON object"])
    return import_kit(instance, name, root, source)


__all__ = ["KIT_KINDS", "MAX_DELAY_MS", "import_kit", "import_kit_text"]
