"""``agency exporter``: serve the worker-side Prometheus metrics (``agency.exporter``)."""

from __future__ import annotations

from typing import Annotated

import typer

from agency.settings import get_settings

__all__ = ["exporter_cmd", "register"]


def exporter_cmd(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bind port.")] = 9464,
) -> None:
    """Serve flow-run, node-duration and LLM-usage metrics at http://HOST:PORT/metrics until
    Ctrl-C. Reads the Prefect API at PREFECT_API_URL and the platform DB; never writes."""
    from agency.exporter import serve_exporter

    try:
        running = serve_exporter(get_settings(), host, port)
    except OSError as exc:
        typer.secho(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True, fg="red")
        raise typer.Exit(2) from None
    typer.echo(f"exporter serving {running.url}")
    try:
        running.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


def register(app: typer.Typer) -> None:
    """Add ``agency exporter`` to the CLI."""
    app.command("exporter")(exporter_cmd)
