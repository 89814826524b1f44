"""The node catalog: every node's ``NodeSpec``, the single source for the spec runner, the
portal and the NL drafter. Each node module declares its own ``SPEC``; registering a new node
means adding it here, or, for a node shipped by another package, declaring an entry point in the
``agency.nodes`` group that resolves to its ``NodeSpec`` (or to a module with a ``SPEC``)::

    [project.entry-points."agency.nodes"]
    fax = "agency_fax.node:SPEC"

Example::

    spec = get_node("http_request")
    spec.input_schema["properties"]["url"]
    output = spec.task(spec.input_model.model_validate(params))
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from types import ModuleType

from agency.errors import NotFound
from nodes._base import NodeSpec
from nodes.aggregate import SPEC as AGGREGATE
from nodes.approve import SPEC as APPROVE
from nodes.db_query import SPEC as DB_QUERY
from nodes.delay import SPEC as DELAY
from nodes.google_sheets_append import SPEC as GOOGLE_SHEETS_APPEND
from nodes.http_request import SPEC as HTTP_REQUEST
from nodes.llm import SPEC as LLM
from nodes.log_message import SPEC as LOG_MESSAGE
from nodes.notify import SPEC as NOTIFY
from nodes.read_file import SPEC as READ_FILE
from nodes.route import SPEC as ROUTE
from nodes.scrape import SPEC as SCRAPE
from nodes.send_email import SPEC as SEND_EMAIL
from nodes.store_file import SPEC as STORE_FILE
from nodes.transform import SPEC as TRANSFORM

ENTRY_POINT_GROUP = "agency.nodes"
BUILTIN: dict[str, NodeSpec] = {
    spec.kind: spec
    for spec in (
        AGGREGATE,
        APPROVE,
        DB_QUERY,
        DELAY,
        GOOGLE_SHEETS_APPEND,
        HTTP_REQUEST,
        LLM,
        LOG_MESSAGE,
        NOTIFY,
        READ_FILE,
        ROUTE,
        SCRAPE,
        SEND_EMAIL,
        STORE_FILE,
        TRANSFORM,
    )
}
CATALOG: dict[str, NodeSpec] = {}
_log = logging.getLogger(__name__)


def plugin_specs() -> list[NodeSpec]:
    """The ``NodeSpec`` of every ``agency.nodes`` entry point that loads; broken ones are logged."""
    specs = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
        except Exception as exc:  # a broken plugin must not take the catalog down
            _log.error("Node plugin %r (%s) does not load: %s", ep.name, ep.value, exc)
            continue
        spec = getattr(target, "SPEC", None) if isinstance(target, ModuleType) else target
        if not isinstance(spec, NodeSpec):
            _log.error("Node plugin %r (%s) is not a NodeSpec; skipped.", ep.name, ep.value)
            continue
        specs.append(spec)
    return specs


def reload_catalog() -> dict[str, NodeSpec]:
    """Rebuild ``CATALOG`` in place: built-in nodes, then plugins (which cannot shadow them)."""
    catalog = dict(BUILTIN)
    for spec in plugin_specs():
        if spec.kind in catalog:
            _log.error("Node plugin kind %r is taken by another node; skipped.", spec.kind)
            continue
        catalog[spec.kind] = spec
    CATALOG.clear()
    CATALOG.update(catalog)
    return CATALOG


def get_node(kind: str) -> NodeSpec:
    """The spec of node ``kind``; raises ``NotFound`` naming the known kinds."""
    try:
        return CATALOG[kind]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise NotFound(f"Unknown node kind '{kind}'. Known kinds: {known}.") from None


def list_nodes() -> list[NodeSpec]:
    """Every node spec, sorted by kind."""
    return [CATALOG[kind] for kind in sorted(CATALOG)]


reload_catalog()
