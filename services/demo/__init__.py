"""The demo agency: a client whose workflows run and deliver with no outside account.

- :mod:`services.demo.servers` — the demo services ``agency up`` starts when the demo is on: a
  mail catcher (real SMTP on loopback, messages kept as a Maildir under ``<home>/demo/inbox``),
  a sample JSON API and an OpenAI-compatible demo model whose every answer says it is a demo.
- :mod:`services.demo.inbox` — the mail catcher's messages, for the portal's *Demo inbox*.
- :mod:`services.demo.setup` — ``agency demo``: create, fire its webhook, reset.
"""

from services.demo.inbox import InboxMessage, demo_inbox, read_inbox
from services.demo.layout import DemoLayout
from services.demo.setup import (
    DEMO_AGENCY_EMAIL,
    DEMO_CLIENT,
    DEMO_CLIENT_EMAIL,
    CreatedDemo,
    create_demo,
    demo_exists,
    reset_demo,
    send_demo_webhook,
)

__all__ = [
    "DEMO_AGENCY_EMAIL",
    "DEMO_CLIENT",
    "DEMO_CLIENT_EMAIL",
    "CreatedDemo",
    "DemoLayout",
    "InboxMessage",
    "create_demo",
    "demo_exists",
    "demo_inbox",
    "read_inbox",
    "reset_demo",
    "send_demo_webhook",
]
