"""The demo services: mail catcher, sample API and demo model, in one process on loopback.

``python -m services.demo`` (started by ``agency up`` when the demo is on) serves:

- **SMTP** on ``AGENCY_DEMO_SMTP_PORT`` (2525), aiosmtpd, no TLS, no login: every message is
  accepted with ``250`` and kept as one file of the Maildir ``<home>/demo/inbox`` (the portal's
  *Demo inbox* reads it). Nothing is relayed anywhere.
- **HTTP** on ``AGENCY_DEMO_HTTP_PORT`` (8090):
  - ``GET /api/today`` — ``200`` JSON: today's sample orders and support tickets;
  - ``GET /api/reviews`` — ``200`` JSON ``{"reviews": [{"author", "text", "stars"}]}``;
  - ``GET /v1/models`` and ``POST /v1/chat/completions`` — the demo model, OpenAI's protocol:
    ``401`` without ``Authorization: Bearer <the key in <home>/demo/llm-key>``, ``400`` without
    ``messages``, else ``200`` with a ``chat.completion`` whose text starts with
    :data:`DEMO_LABEL` (JSON mode: an object with ``"demo": true`` and a keyword-based
    ``sentiment``). It is no language model: it quotes the first lines of the data it was sent.
  - ``GET /healthz`` — ``200 {"ok": true}``.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from datetime import date
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agency.settings import Settings, get_settings
from services.demo.layout import DemoLayout

#: how every answer of the demo model begins
DEMO_LABEL = "[DEMO MODEL - not a real LLM; store the client's own openai key for real answers]"
DEMO_MODEL = "demo-model"
_WORD = re.compile(r"\w+|[^\w\s]")
_NEGATIVE = ("bad", "late", "broken", "slow", "rude", "never", "worst", "refund", "disappoint")
_POSITIVE = ("great", "love", "fast", "excellent", "friendly", "perfect", "best", "recommend")

REVIEWS = [
    {"author": "Ana", "stars": 5, "text": "Great coffee and friendly staff, I love this place."},
    {"author": "Ben", "stars": 2, "text": "My order was late and the cup was broken."},
    {"author": "Chloe", "stars": 4, "text": "Fast delivery, excellent pastries. Recommend!"},
    {"author": "Dev", "stars": 3, "text": "It was fine. Nothing special about the menu."},
    {"author": "Eva", "stars": 1, "text": "Rude answer on the phone and I never got a refund."},
]


def _today() -> dict[str, Any]:
    return {
        "date": date.today().isoformat(),
        "orders": [
            {"id": "A-1041", "customer": "Hotel Lumen", "total_eur": 1240.0, "status": "shipped"},
            {"id": "A-1042", "customer": "Café Soleil", "total_eur": 318.5, "status": "new"},
            {"id": "A-1043", "customer": "Bistro Nord", "total_eur": 96.0, "status": "delayed"},
        ],
        "tickets": [
            {"id": 77, "subject": "Invoice address wrong", "priority": "low"},
            {"id": 78, "subject": "Delivery A-1043 late", "priority": "high"},
        ],
        "note": "Sample data from the demo API (services/demo/servers.py).",
    }


def _sentiment(text: str) -> str:
    lower = text.lower()
    score = sum(w in lower for w in _POSITIVE) - sum(w in lower for w in _NEGATIVE)
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def _reply(messages: list[dict[str, Any]], json_mode: bool) -> str:
    prompt = str(messages[-1].get("content", "")) if messages else ""
    if json_mode:
        return json.dumps({"demo": True, "note": DEMO_LABEL, "sentiment": _sentiment(prompt)})
    data = prompt.split("DATA:", 1)[-1].strip()
    quoted = " ".join(data.split())[:400]
    return f"{DEMO_LABEL}\nThe data this run received begins with: {quoted}"


def _error(status: int, message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return JSONResponse(body, status_code=status)


def http_app(llm_key: str) -> Starlette:
    """The sample API and demo model (see the module docstring)."""

    async def today(_: Request) -> JSONResponse:
        return JSONResponse(_today())

    async def reviews(_: Request) -> JSONResponse:
        return JSONResponse({"reviews": REVIEWS})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def models(_: Request) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": DEMO_MODEL, "object": "model", "owned_by": "demo"}]}
        )

    async def completions(request: Request) -> JSONResponse:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), llm_key.encode()):
            return _error(401, "Incorrect API key for the demo model.")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "The body is not JSON.")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' is required.")
        json_mode = (body.get("response_format") or {}).get("type") == "json_object"
        text = _reply(messages, json_mode)
        prompt_tokens = sum(len(_WORD.findall(str(m.get("content", "")))) for m in messages)
        completion_tokens = len(_WORD.findall(text))
        return JSONResponse(
            {
                "id": f"chatcmpl-demo-{time.time_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or DEMO_MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    return Starlette(
        routes=[
            Route("/api/today", today),
            Route("/api/reviews", reviews),
            Route("/healthz", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


def mail_catcher(layout: DemoLayout) -> Controller:
    """An unstarted aiosmtpd controller that keeps every message in ``layout.inbox``."""
    layout.inbox.parent.mkdir(parents=True, exist_ok=True)
    return Controller(Mailbox(str(layout.inbox)), hostname=layout.host, port=layout.smtp_port)


def serve(settings: Settings) -> None:
    """Run the mail catcher and the HTTP services until SIGTERM / Ctrl-C."""
    layout = DemoLayout.of(settings)
    smtp = mail_catcher(layout)
    smtp.start()
    try:
        uvicorn.run(
            http_app(layout.llm_key()),
            host=layout.host,
            port=layout.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
        )
    finally:
        smtp.stop()


def main() -> None:
    """Entry point of ``python -m services.demo``."""
    serve(get_settings())
