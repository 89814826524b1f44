"""Webhook secrets in the secret store: ``<store>/clients/<client>/webhook/<workflow>``.

One record holds the current secret and, after a rotation, the previous one with the instant it
stops verifying (the grace period). The platform DB never holds a secret.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agency.settings import Settings
from blocks import get_secret_store

KIND = "webhook"


def _name(workflow: str) -> str:
    # Prefect block names allow dashes only; workflow slugs use underscores
    return workflow.replace("_", "-")


def store_secret(
    settings: Settings, client: str, workflow: str, secret: str, previous: str | None = None
) -> None:
    """Save ``secret`` as current; ``previous`` keeps verifying for the configured grace period."""
    data = {"secret": secret}
    if previous:
        until = datetime.now(UTC) + timedelta(seconds=settings.webhook_rotation_grace_seconds)
        data |= {"previous": previous, "previous_until": until.isoformat()}
    get_secret_store(settings).write(client, KIND, _name(workflow), data)


def current_secret(settings: Settings, client: str, workflow: str) -> str:
    """The current secret; raises ``CredentialMissing`` if none is stored."""
    return get_secret_store(settings).read(client, KIND, _name(workflow))["secret"]


def valid_secrets(settings: Settings, client: str, workflow: str) -> list[str]:
    """Secrets that verify right now: the current one, plus the previous one within its grace."""
    data = get_secret_store(settings).read(client, KIND, _name(workflow))
    found = [data["secret"]]
    until = data.get("previous_until")
    if data.get("previous") and until and datetime.fromisoformat(until) > datetime.now(UTC):
        found.append(data["previous"])
    return found
