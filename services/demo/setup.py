"""``agency demo``: create the demo agency, fire its webhook, and remove it all again.

:func:`create_demo` needs the Prefect API (``agency up`` running): it adds the client
:data:`DEMO_CLIENT` with credentials pointing at the demo services (:mod:`services.demo.servers`),
an agency user and a client user with fresh passwords (returned once), activates two prebuilt
workflows — ``daily_digest`` hourly on a cron schedule, ``review_sentiment`` on a signed webhook
— and starts the first run of each, so both are COMPLETED within a minute or two and their emails
wait in the demo inbox. The demo client alone may reach the demo services' loopback addresses
(:mod:`agency.egress.scoped`). :func:`reset_demo` offboards the client and deletes the rest.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from agency.db import Client, User, session_scope
from agency.egress.scoped import write_client_allowance
from agency.errors import InputInvalid, NotFound
from agency.keyfiles import secret_file
from agency.settings import Settings
from services.activations import activate
from services.auth import create_user, remove_user
from services.clients import add_client
from services.credentials import set_credential
from services.demo.layout import DemoLayout
from services.demo.servers import DEMO_MODEL
from services.webhooks import enable_webhook

DEMO_CLIENT = "demo"
DEMO_AGENCY_EMAIL = "agency@demo.test"
DEMO_CLIENT_EMAIL = "owner@demo-bakery.test"
DIGEST = "daily_digest"
REVIEWS = "review_sentiment"
DIGEST_CRON = "0 * * * *"
_WEBHOOK_FILE = "webhook.json"


@dataclass(frozen=True)
class CreatedDemo:
    """What :func:`create_demo` made; the passwords exist nowhere else (shown once)."""

    client: str
    agency_email: str
    agency_password: str
    client_email: str
    client_password: str
    workflows: dict[str, str]  # workflow -> trigger, for the summary
    webhook_url: str
    first_runs: list[str]  # flow run ids and delivery ids started


def demo_exists(settings: Settings) -> bool:
    """Whether the demo client exists in the platform DB."""
    with session_scope(settings.platform_database_url) as session:
        return session.scalar(select(Client.id).where(Client.slug == DEMO_CLIENT)) is not None


def home_is_fresh(settings: Settings) -> bool:
    """Whether the platform has no client and no user yet (a fresh ``AGENCY_HOME``)."""
    with session_scope(settings.platform_database_url) as session:
        return (
            session.scalar(select(Client.id).limit(1)) is None
            and session.scalar(select(User.id).limit(1)) is None
        )


def _password() -> str:
    return secrets.token_urlsafe(12)


def create_demo(
    settings: Settings, *, openai: dict[str, Any] | None = None, start_runs: bool = True
) -> CreatedDemo:
    """Create the demo (see the module); ``openai`` is the client's own ``openai`` credential
    (else the demo model's). Raises ``InputInvalid`` when the demo exists already."""
    if demo_exists(settings):
        raise InputInvalid(
            "The demo exists already: `agency demo --reset` removes it, then create it again."
        )
    layout = DemoLayout.of(settings)
    write_client_allowance(settings.home, DEMO_CLIENT, layout.endpoints)
    add_client(
        settings,
        DEMO_CLIENT,
        "Demo Bakery",
        "UTC",
        [DEMO_CLIENT_EMAIL],
        actor="demo",
    )
    llm = openai or {
        "api_key": layout.llm_key(),
        "base_url": layout.llm_base_url,
        "default_model": DEMO_MODEL,
    }
    set_credential(settings, DEMO_CLIENT, "openai", "default", llm, actor="demo")
    smtp = {
        "host": layout.host,
        "port": layout.smtp_port,
        "security": "none",
        "from_address": "Demo Bakery reports <reports@demo-bakery.test>",
    }
    set_credential(settings, DEMO_CLIENT, "smtp", "default", smtp, actor="demo")
    agency_password, client_password = _password(), _password()
    create_user(settings, DEMO_AGENCY_EMAIL, agency_password, "agency", actor="demo")
    create_user(settings, DEMO_CLIENT_EMAIL, client_password, "client", DEMO_CLIENT, actor="demo")
    activate(
        settings,
        DEMO_CLIENT,
        DIGEST,
        {
            "source_url": f"{layout.http_url}/api/today",
            "recipients": [DEMO_CLIENT_EMAIL],
            "subject": "Demo Bakery: your digest",
        },
        DIGEST_CRON,
        actor="demo",
    )
    activate(
        settings,
        DEMO_CLIENT,
        REVIEWS,
        {
            "reviews_url": f"{layout.http_url}/api/reviews",
            "recipients": [DEMO_CLIENT_EMAIL],
            "subject": "Demo Bakery: review sentiment",
            "concurrency": 2,
        },
        None,
        actor="demo",
    )
    hook = enable_webhook(settings, DEMO_CLIENT, REVIEWS, actor="demo")
    secret_file(
        layout.directory / _WEBHOOK_FILE,
        lambda: json.dumps({"url": hook.url, "secret": hook.secret}),
    )
    first_runs: list[str] = []
    if start_runs:
        from deployments.runs import start_run

        first_runs.append(str(start_run(DIGEST, DEMO_CLIENT).id))
        first_runs.append(send_demo_webhook(settings))
    return CreatedDemo(
        client=DEMO_CLIENT,
        agency_email=DEMO_AGENCY_EMAIL,
        agency_password=agency_password,
        client_email=DEMO_CLIENT_EMAIL,
        client_password=client_password,
        workflows={DIGEST: f"cron {DIGEST_CRON} (UTC)", REVIEWS: "signed webhook"},
        webhook_url=hook.url,
        first_runs=first_runs,
    )


def send_demo_webhook(settings: Settings, event: dict[str, Any] | None = None) -> str:
    """POST one Standard Webhooks-signed event to the demo's webhook; return the delivery id.

    ``POST /hooks/demo/review_sentiment`` on the gateway with ``webhook-id``,
    ``webhook-timestamp`` and ``webhook-signature``; the gateway answers ``202
    {"delivery_id"}``. Raises ``NotFound`` without a demo, ``InputInvalid`` on another answer.
    """
    from nodes.notify import sign

    path = DemoLayout.of(settings).directory / _WEBHOOK_FILE
    if not path.exists():
        raise NotFound("There is no demo webhook: create the demo with `agency demo`.")
    hook = json.loads(path.read_text())
    body = json.dumps(event or {"type": "reviews.updated", "source": "agency demo"}).encode()
    message_id, timestamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(hook["secret"], message_id, timestamp, body),
    }
    answer = httpx.post(hook["url"], content=body, headers=headers, timeout=30)
    if answer.status_code not in (200, 202):
        raise InputInvalid(
            f"The gateway answered {answer.status_code} to the demo webhook: {answer.text[:200]}"
        )
    return str(answer.json()["delivery_id"])


def webhook_command(settings: Settings) -> str:
    """The ``curl`` line that fires the demo webhook by hand (unsigned: the gateway says 401)."""
    return f"curl -X POST {settings.gateway_url}/hooks/{DEMO_CLIENT}/{REVIEWS}"


def reset_demo(settings: Settings) -> list[str]:
    """Remove the demo: offboard its client (deployments, runs, credentials, its users), delete
    the demo agency user, the egress allowance and ``<home>/demo``. Returns what was done."""
    done: list[str] = []
    layout = DemoLayout.of(settings)
    if demo_exists(settings):
        from services.lifecycle import offboard_client

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        export = settings.home / "offboarded" / f"demo-{stamp}.json"
        offboard_client(settings, DEMO_CLIENT, export, actor="demo")
        done.append(f"client {DEMO_CLIENT} offboarded (export: {export})")
    try:
        remove_user(settings, DEMO_AGENCY_EMAIL, actor="demo")
        done.append(f"user {DEMO_AGENCY_EMAIL} removed")
    except NotFound:
        pass
    write_client_allowance(settings.home, DEMO_CLIENT, None)
    if layout.directory.exists():
        shutil.rmtree(layout.directory)
        done.append(f"{layout.directory} deleted (inbox, demo keys)")
    return done
