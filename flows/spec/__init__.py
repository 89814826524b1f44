"""Declarative workflow specs: model, templates, validation and the execution engine."""

from flows.spec.engine import SpecRun
from flows.spec.model import CredentialBinding, SpecEdge, SpecNode, WorkflowSpec, parse_spec
from flows.spec.validate import check_spec, check_text, ensure_valid

__all__ = [
    "CredentialBinding",
    "SpecEdge",
    "SpecNode",
    "SpecRun",
    "WorkflowSpec",
    "check_spec",
    "check_text",
    "ensure_valid",
    "parse_spec",
]
