"""The agency's OAuth app registrations: client id and secret per provider, in the secret store.

An app lives in the platform's own area of the secret store (Vault:
``<mount>/platform/oauth/agency/app/<provider>``; embedded: a sealed block), never in the
platform DB or a Prefect parameter. Client policies may read this area (runs refresh tokens with
the app's secret) but never write it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from agency.errors import CredentialMissing, InputInvalid, NotFound
from agency.redaction import register_secret
from blocks.names import check_slug
from blocks.oauth.providers import BUILTIN_PROVIDERS, OAuthProvider
from blocks.stores.base import SecretStore

#: the store area of app registrations, apart from client credentials and webhook secrets
OAUTH_AREA = "platform/oauth"
_OWNER, _KIND = "agency", "app"
#: override keys besides the provider's own fields
_API_BASE = "api_base_url"


class OAuthApp(BaseModel):
    """A provider as the agency registered it: endpoints (with overrides) and its credentials."""

    model_config = ConfigDict(frozen=True)

    provider: OAuthProvider
    client_id: str
    client_secret: SecretStr

    @property
    def slug(self) -> str:
        """The provider's slug."""
        return self.provider.slug

    @property
    def kind(self) -> str:
        """The credential kind its connections are stored as (``oauth2`` for generic ones)."""
        return self.slug if self.slug in BUILTIN_PROVIDERS else "oauth2"


def _provider(slug: str, overrides: dict[str, Any]) -> OAuthProvider:
    fields = {k: v for k, v in overrides.items() if k != _API_BASE}
    try:
        if slug in BUILTIN_PROVIDERS:
            provider = BUILTIN_PROVIDERS[slug].model_copy(update=fields)
            provider = OAuthProvider.model_validate(provider.model_dump())
        else:
            provider = OAuthProvider.model_validate(
                {"slug": slug, "title": slug.replace("-", " ").title(), **fields}
            )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        raise InputInvalid(f"Invalid OAuth provider '{slug}': {problems}.") from None
    if overrides.get(_API_BASE):
        base = str(overrides[_API_BASE]).rstrip("/")
        names = provider.api_urls or {"api": base}
        provider = provider.model_copy(update={"api_urls": dict.fromkeys(names, base)})
    return provider


def save_app(
    store: SecretStore,
    slug: str,
    client_id: str,
    client_secret: str,
    overrides: dict[str, Any] | None = None,
) -> OAuthApp:
    """Validate and store the agency's app for provider ``slug`` (builtin or generic)."""
    check_slug(slug, "provider")
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, "", [], {})}
    if not client_id or not client_secret:
        raise InputInvalid("An OAuth app needs both a client id and a client secret.")
    provider = _provider(slug, overrides)
    store.write(
        _OWNER,
        _KIND,
        slug,
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "overrides": json.dumps(overrides, sort_keys=True),
        },
    )
    return OAuthApp(provider=provider, client_id=client_id, client_secret=SecretStr(client_secret))


def load_app(store: SecretStore, slug: str) -> OAuthApp:
    """The registered app of provider ``slug``; ``NotFound`` in plain words when there is none."""
    try:
        data = store.read(_OWNER, _KIND, slug)
    except CredentialMissing:
        title = BUILTIN_PROVIDERS[slug].title if slug in BUILTIN_PROVIDERS else slug
        raise NotFound(
            f"The agency has not set up its {title} app yet, so accounts cannot be connected "
            "there. Ask your agency to register it."
        ) from None
    register_secret(data.get("client_secret"))
    return OAuthApp(
        provider=_provider(slug, json.loads(data.get("overrides") or "{}")),
        client_id=data["client_id"],
        client_secret=SecretStr(data["client_secret"]),
    )


def list_apps(store: SecretStore) -> list[OAuthApp]:
    """Every registered app, by slug."""
    return [load_app(store, ref.name) for ref in store.list(_OWNER) if ref.kind == _KIND]


def delete_app(store: SecretStore, slug: str) -> None:
    """Forget the app of provider ``slug`` (connections made with it stop refreshing)."""
    try:
        store.delete(_OWNER, _KIND, slug)
    except CredentialMissing:
        raise NotFound(f"No OAuth app is registered for '{slug}'.") from None
