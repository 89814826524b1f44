"""What a spec node ended with, as templates and edges see it under ``nodes.<id>``.

A plain node: ``{"status", "output", "error"}`` with status ``completed``, ``failed`` (handled by
an ``on: failed``/``on: always`` edge) or ``skipped``. A mapped node adds per-item lists
``succeeded`` (``{"index", "item", "output"}``) and ``failed`` (``{"index", "item", "error"}``);
its ``output`` keeps item order with ``None`` for a failed item, and its status is ``failed``
when any item failed. ``error`` is ``{"type", "message", "status_code"}``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

SKIPPED, COMPLETED, FAILED = "skipped", "completed", "failed"
_STATUS_IN_MESSAGE = re.compile(r"\banswered (\d{3})\b")  # http_request / notify wording


def error_info(exc: BaseException) -> dict[str, Any]:
    """``{"type", "message", "status_code"}`` of a node's failure (status code where known)."""
    message = str(exc) or type(exc).__name__
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        found = _STATUS_IN_MESSAGE.search(message)
        status = int(found.group(1)) if found else None
    return {"type": type(exc).__name__, "message": message, "status_code": status}


def as_output(result: Any) -> Any:
    """A node's result as JSON-safe data."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    return result


def completed(output: Any) -> dict[str, Any]:
    return {"status": COMPLETED, "output": output, "error": None}


def failed(error: dict[str, Any]) -> dict[str, Any]:
    return {"status": FAILED, "output": None, "error": error}


def skipped() -> dict[str, Any]:
    return {"status": SKIPPED, "output": None, "error": None}


def mapped(items: list[Any], outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The outcome of a mapped node from its per-item outcomes (in item order)."""
    succeeded = [
        {"index": i, "item": item, "output": o["output"]}
        for i, (item, o) in enumerate(zip(items, outcomes, strict=True))
        if o["status"] == COMPLETED
    ]
    failures = [
        {"index": i, "item": item, "error": o["error"]}
        for i, (item, o) in enumerate(zip(items, outcomes, strict=True))
        if o["status"] == FAILED
    ]
    return {
        "status": FAILED if failures else COMPLETED,
        "output": [o["output"] for o in outcomes],
        "error": None,
        "succeeded": succeeded,
        "failed": failures,
    }


def took(outcome: dict[str, Any], on: str) -> bool:
    """Whether an edge ``on`` an outcome leaves a node that ended with ``outcome``."""
    status = outcome["status"]
    if status == SKIPPED:
        return False
    if on == "always":
        return True
    if "succeeded" in outcome:  # mapped: the items that went each way
        return (
            bool(outcome["failed"])
            if on == FAILED
            else bool(outcome["succeeded"]) or not (outcome["failed"])
        )
    return status == on
