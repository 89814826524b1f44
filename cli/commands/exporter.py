"""``agency exporter``: serve the worker-side Prometheus metrics (the ``exporter`` face)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

__all__ = ["exporter_cmd", "register"]


def exporter_cmd(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bind port.")] = 9464,
) -> None:
    """Serve flow-run, node-duration and LLM-usage metrics at http://HOST:PORT/metrics until
    Ctrl-C. Reads the Prefect API at PREFECT_API_URL and the platform DB; never writes."""
    # the exporter is a face of its own: this process becomes it rather than importing it
    args = [sys.executable, "-m", "exporter", "--host", host, "--port", str(port)]
    os.execv(sys.executable, args)


def register(app: typer.Typer) -> None:
    """Add ``agency exporter`` to the CLI."""
    app.command("exporter")(exporter_cmd)
