"""Declarative workflow specs: model, templates, validation and the execution engine."""

from flows.spec.engine import SpecRun
from flows.spec.model import SpecEdge, SpecNode, WorkflowSpec, parse_spec
from flows.spec.validate import check_spec, ensure_valid

__all__ = [
    "SpecEdge",
    "SpecNode",
    "SpecRun",
    "WorkflowSpec",
    "check_spec",
    "ensure_valid",
    "parse_spec",
]
