"""``python -m gateway [--host H] [--port P] [--no-dispatcher]``: serve the gateway until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from agency.db import upgrade
from agency.settings import get_settings
from gateway.app import create_app


def serve(
    host: Annotated[str | None, typer.Option(help="Bind host; default from settings.")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port; default from settings.")] = None,
    dispatcher: Annotated[bool, typer.Option(help="Also dispatch the outbox here.")] = True,
) -> None:
    """Serve the webhook gateway and client API (with its dispatcher)."""
    settings = get_settings()
    upgrade(settings.platform_database_url)
    uvicorn.run(
        create_app(settings, run_dispatcher=dispatcher),
        host=host or settings.gateway_host,
        port=port or settings.gateway_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    typer.run(serve)
