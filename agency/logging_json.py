"""JSON log lines carrying client, workflow and run ids, for production log pipelines.

Use it through ``infra/logging.yml`` (``PREFECT_LOGGING_SETTINGS_PATH``); every line is one JSON
object with ``time``, ``level``, ``logger``, ``message`` and, inside a run, ``flow_run_id``,
``task_run_id``, ``client`` and ``workflow`` (from the run's ``client:`` / ``workflow:`` tags).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


def _run_labels() -> dict[str, Any]:
    try:
        from prefect.runtime import flow_run, task_run
    except ImportError:  # pragma: no cover - Prefect is a dependency
        return {}
    labels: dict[str, Any] = {}
    run_id = flow_run.id
    if run_id:
        labels["flow_run_id"] = str(run_id)
        for tag in flow_run.tags or []:
            key, _, value = str(tag).partition(":")
            if key in ("client", "workflow") and value:
                labels[key] = value
        labels.setdefault("workflow", flow_run.flow_name)
    if task_run.id:
        labels["task_run_id"] = str(task_run.id)
    return labels


class JsonFormatter(logging.Formatter):
    """One JSON object per record (secrets are masked by the redaction filter beforehand)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_run_labels())
        for attr in ("flow_run_id", "task_run_id"):
            value = getattr(record, attr, None)
            if value and attr not in line:
                line[attr] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
