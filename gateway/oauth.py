"""The connect flow's public half: ``GET /oauth/start`` and ``GET /oauth/callback``.

``/oauth/start?state=...`` sets a browser cookie (HttpOnly, SameSite=Lax, ``/oauth`` only) whose
digest binds the attempt to this browser, then redirects to the provider's consent page.
``/oauth/callback`` is the one redirect URI every provider app registers; it finishes the attempt
(see :mod:`services.connections`) and answers a small page with one sentence and a link back to
the portal. Nothing here ever shows a token, a code or a traceback.
"""

from __future__ import annotations

import html
import logging
import secrets

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agency.errors import AgencyError
from agency.settings import Settings
from services.connections import (
    CALLBACK_PATH,
    START_PATH,
    ConnectRefused,
    begin_authorization,
    complete_connect,
)

logger = logging.getLogger("agency.gateway")
router = APIRouter()
COOKIE = "agency_oauth"


def _settings(request: Request) -> Settings:
    return request.app.state.gateway.settings


def _page(settings: Settings, ok: bool, message: str, status: int = 200) -> HTMLResponse:
    portal = html.escape(f"{settings.portal_base_url}/client-credentials")
    title = "Connected" if ok else "Not connected"
    body = f"""<!doctype html><html lang="en"><meta charset="utf-8">
<title>{title}</title><meta name="viewport" content="width=device-width">
<body style="font:16px system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em">
<h1 style="font-size:1.4em">{"&#10004; " if ok else ""}{title}</h1>
<p id="outcome">{html.escape(message)}</p>
<p><a id="back" href="{portal}">Back to the portal</a> (you can also close this tab).</p>
</body></html>"""
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.get(START_PATH, include_in_schema=False)
async def start(request: Request) -> Response:
    """Bind the attempt to this browser and send it to the provider's consent page."""
    settings = _settings(request)
    browser = secrets.token_urlsafe(32)
    try:
        url = await anyio.to_thread.run_sync(
            begin_authorization, settings, request.query_params.get("state", ""), browser
        )
    except ConnectRefused as exc:
        return _page(settings, False, str(exc), 400)
    except AgencyError as exc:
        return _page(settings, False, str(exc), 409)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        COOKIE,
        browser,
        max_age=600,
        path="/oauth",
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to the callback
        secure=settings.gateway_url.startswith("https://"),
    )
    return response


@router.get(CALLBACK_PATH, include_in_schema=False)
async def callback(request: Request) -> Response:
    """Finish the attempt the provider sent this browser back with."""
    settings = _settings(request)
    query = request.query_params
    try:
        outcome = await anyio.to_thread.run_sync(
            lambda: complete_connect(
                settings,
                query.get("state", ""),
                request.cookies.get(COOKIE),
                code=query.get("code"),
                error=query.get("error"),
            )
        )
    except ConnectRefused as exc:
        return _page(settings, False, str(exc), 400)
    except AgencyError as exc:
        return _page(settings, False, str(exc), 409)
    except Exception:
        logger.exception("OAuth callback failed")
        return _page(settings, False, "Something went wrong on our side. Nothing was stored.", 500)
    response = _page(settings, outcome.ok, outcome.message, 200 if outcome.ok else 400)
    response.delete_cookie(COOKIE, path="/oauth")
    return response
