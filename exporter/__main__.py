"""``python -m exporter [--host H] [--port P]``: serve the exporter until Ctrl-C or SIGTERM."""

from __future__ import annotations

from typing import Annotated

import typer

from agency.settings import get_settings
from exporter.collector import serve_exporter


def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bind port.")] = 9464,
) -> None:
    """Serve flow-run, node-duration and LLM-usage metrics at http://HOST:PORT/metrics."""
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


if __name__ == "__main__":
    typer.run(serve)
