"""OAuth2 providers as configuration: endpoints, scopes per use, PKCE, how to read the identity.

A provider is data, not code: the built-in ones (Google, Microsoft, Slack, HubSpot) are declared
below, and an agency engineer registers any other one as a generic provider with the same fields
(``agency connections app set``). The agency's app registration (client id and secret, see
:mod:`blocks.oauth.apps`) may override any endpoint, e.g. a test server or a sovereign cloud.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OAuthProvider(BaseModel):
    """Everything the connect flow and the nodes need to know about one OAuth2 provider."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(description="Lowercase name, e.g. google; the credential kind of builtins.")
    title: str = Field(description="Name shown to clients, e.g. Google.")
    authorize_url: str = Field(description="Where the user approves access.")
    token_url: str = Field(description="Token endpoint (code exchange and refresh).")
    revoke_url: str | None = Field(default=None, description="RFC 7009 revocation endpoint.")
    userinfo_url: str | None = Field(
        default=None, description="Identity endpoint; `{access_token}` is substituted if present."
    )
    identity_field: str = Field(
        default="email", description="Dotted path of the account name in the identity answer."
    )
    pkce: bool = Field(default=True, description="Send a PKCE S256 code challenge.")
    scopes: dict[str, list[str]] = Field(
        default_factory=dict, description="Scopes per use, e.g. {'gmail_send': [...]}."
    )
    scope_separator: str = Field(default=" ", description="How scopes are joined (Slack: ',').")
    authorize_params: dict[str, str] = Field(
        default_factory=dict, description="Extra authorize parameters (Google: access_type)."
    )
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = Field(
        default="client_secret_basic", description="How the app authenticates to the token URL."
    )
    api_urls: dict[str, str] = Field(
        default_factory=dict, description="Base URLs of the provider's APIs the nodes call."
    )

    def scope_for(self, uses: list[str] | None = None) -> str:
        """The scope string for ``uses`` (all uses when None), de-duplicated, in order."""
        wanted: list[str] = []
        for use, scopes in self.scopes.items():
            if uses is None or use in uses:
                wanted += [s for s in scopes if s not in wanted]
        return self.scope_separator.join(wanted)

    def api_url(self, api: str) -> str:
        """Base URL of one of the provider's APIs (``gmail``, ``graph``, ``slack``...)."""
        try:
            return self.api_urls[api].rstrip("/")
        except KeyError:
            raise KeyError(f"provider {self.slug} has no '{api}' API") from None

    def identity(self, answer: dict[str, Any]) -> str:
        """The account name in an identity answer (``identity_field`` may be dotted)."""
        value: Any = answer
        for part in self.identity_field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return str(value) if value not in (None, "") else ""


BUILTIN_PROVIDERS: dict[str, OAuthProvider] = {
    p.slug: p
    for p in (
        OAuthProvider(
            slug="google",
            title="Google",
            authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
            token_url="https://oauth2.googleapis.com/token",
            revoke_url="https://oauth2.googleapis.com/revoke",
            userinfo_url="https://openidconnect.googleapis.com/v1/userinfo",
            scopes={
                "identity": ["openid", "email"],
                "gmail_send": ["https://www.googleapis.com/auth/gmail.send"],
                "sheets": ["https://www.googleapis.com/auth/spreadsheets"],
            },
            # a refresh token on every consent, not only the first one
            authorize_params={"access_type": "offline", "prompt": "consent"},
            api_urls={
                "gmail": "https://gmail.googleapis.com",
                "sheets": "https://sheets.googleapis.com",
            },
        ),
        OAuthProvider(
            slug="microsoft",
            title="Microsoft 365",
            authorize_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
            userinfo_url="https://graph.microsoft.com/oidc/userinfo",
            scopes={
                "identity": ["openid", "email", "offline_access"],
                "mail_send": ["https://graph.microsoft.com/Mail.Send"],
            },
            token_auth_method="client_secret_post",
            api_urls={"graph": "https://graph.microsoft.com"},
        ),
        OAuthProvider(
            slug="slack",
            title="Slack",
            authorize_url="https://slack.com/oauth/v2/authorize",
            token_url="https://slack.com/api/oauth.v2.access",
            revoke_url="https://slack.com/api/auth.revoke",
            userinfo_url="https://slack.com/api/auth.test",
            identity_field="team",
            pkce=False,
            scopes={"chat_write": ["chat:write"]},
            scope_separator=",",
            token_auth_method="client_secret_post",
            api_urls={"slack": "https://slack.com"},
        ),
        OAuthProvider(
            slug="hubspot",
            title="HubSpot",
            authorize_url="https://app.hubspot.com/oauth/authorize",
            token_url="https://api.hubapi.com/oauth/v1/token",
            userinfo_url="https://api.hubapi.com/oauth/v1/access-tokens/{access_token}",
            identity_field="user",
            pkce=False,
            scopes={"crm_contacts": ["crm.objects.contacts.read", "crm.objects.contacts.write"]},
            token_auth_method="client_secret_post",
            api_urls={"hubspot": "https://api.hubapi.com"},
        ),
    )
}
