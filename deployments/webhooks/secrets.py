"""Webhook secrets in the secret store's platform area, apart from client credentials:
``<mount>/platform/webhooks/<client>/webhook/<workflow>`` in Vault (no client policy grants it),
``webhook-secret-...`` blocks in the embedded store (never listed with credentials).

One record holds the current secret and, after a rotation, the previous one with the instant it
stops verifying (the grace period). The platform DB never holds a secret. A secret still in the
client area (written before the areas were split) is moved on its first read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agency.errors import CredentialMissing
from agency.settings import Settings
from blocks import CLIENT_AREA, WEBHOOK_AREA, get_secret_store

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
    get_secret_store(settings, WEBHOOK_AREA).write(client, KIND, _name(workflow), data)


def _read(settings: Settings, client: str, workflow: str) -> dict[str, str]:
    store = get_secret_store(settings, WEBHOOK_AREA)
    try:
        return store.read(client, KIND, _name(workflow))
    except CredentialMissing:
        old = get_secret_store(settings, CLIENT_AREA)
        data = old.read(client, KIND, _name(workflow))  # CredentialMissing when in neither
        store.write(client, KIND, _name(workflow), data)
        old.delete(client, KIND, _name(workflow))
        return data


def delete_secret(settings: Settings, client: str, workflow: str) -> None:
    """Forget the webhook's secret (absent is fine)."""
    for area in (WEBHOOK_AREA, CLIENT_AREA):
        try:
            get_secret_store(settings, area).delete(client, KIND, _name(workflow))
        except CredentialMissing:
            pass


def current_secret(settings: Settings, client: str, workflow: str) -> str:
    """The current secret; raises ``CredentialMissing`` if none is stored."""
    return _read(settings, client, workflow)["secret"]


def valid_secrets(settings: Settings, client: str, workflow: str) -> list[str]:
    """Secrets that verify right now: the current one, plus the previous one within its grace."""
    data = _read(settings, client, workflow)
    found = [data["secret"]]
    until = data.get("previous_until")
    if data.get("previous") and until and datetime.fromisoformat(until) > datetime.now(UTC):
        found.append(data["previous"])
    return found
