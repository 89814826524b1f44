"""Credential kinds in the client's words: a title, what it lets a workflow do, where to find it.

The portal and the catalog show these, never the kind slugs (``smtp``, ``http_auth``...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindWords:
    """How one credential kind is named and explained to a client."""

    title: str
    what: str  # one line: what this lets the workflow do
    help: str  # where to find the values


KIND_WORDS: dict[str, KindWords] = {
    "smtp": KindWords(
        "Email account (SMTP)",
        "Lets the workflow send email from your address.",
        "Your SMTP server, port and login are usually shown in your email provider's settings "
        "under 'SMTP' or 'outgoing mail'.",
    ),
    "openai": KindWords(
        "AI model (OpenAI-compatible)",
        "Lets the workflow write summaries and classify text with an AI model.",
        "Create an API key in your OpenAI (or compatible provider's) dashboard under 'API keys'.",
    ),
    "postgres": KindWords(
        "PostgreSQL database",
        "Lets the workflow read and write your database.",
        "Your database host, name and a login are in your hosting provider's console; use a "
        "login with only the rights the workflow needs.",
    ),
    "http_auth": KindWords(
        "API key or login for your API",
        "Lets the workflow call your own web API.",
        "Your API's documentation says whether it takes a bearer token, an API key header or a "
        "username and password.",
    ),
    "slack_webhook": KindWords(
        "Slack channel (incoming webhook)",
        "Lets the workflow post messages to one Slack channel.",
        "In Slack, add the 'Incoming Webhooks' app to the channel and copy its webhook URL.",
    ),
    "s3": KindWords(
        "File storage (S3)",
        "Lets the workflow store and read files in your bucket.",
        "Create an access key for a user allowed on the bucket in your cloud console (IAM).",
    ),
    "webhook_signing": KindWords(
        "Outgoing webhook",
        "Lets the workflow send signed events to an address of yours.",
        "Your receiving system shows the URL and the signing secret (whsec_...).",
    ),
    "google": KindWords(
        "Google account",
        "Lets the workflow send Gmail and write Google Sheets as you.",
        "Press Connect and approve on Google's page.",
    ),
    "microsoft": KindWords(
        "Microsoft 365 account",
        "Lets the workflow send email from your Outlook mailbox.",
        "Press Connect and approve on Microsoft's page.",
    ),
    "slack": KindWords(
        "Slack workspace",
        "Lets the workflow post messages to your Slack channels.",
        "Press Connect and approve on Slack's page; then invite the app to the channel.",
    ),
    "hubspot": KindWords(
        "HubSpot CRM",
        "Lets the workflow read and update your HubSpot contacts.",
        "Press Connect and approve on HubSpot's page.",
    ),
    "oauth2": KindWords(
        "Connected account",
        "Lets the workflow call a service as you.",
        "Press Connect and approve on the service's page.",
    ),
}


def kind_words(kind: str) -> KindWords:
    """The words for ``kind`` (a plain fallback for kinds added without words)."""
    return KIND_WORDS.get(
        kind, KindWords(kind.replace("_", " ").capitalize(), "", "Ask your agency.")
    )
