"""Credential kinds: one pydantic model per kind, secret fields as ``SecretStr``.

The portal and CLI build their forms from these models (titles, descriptions, which fields are
secret); nodes receive the validated model from ``ClientCredential.load()``.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from agency.errors import CredentialInvalid


class CredentialModel(BaseModel):
    """Base of every credential kind; unknown fields are rejected so typos surface."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def secret_fields(cls) -> list[str]:
        """Names of the fields whose values are secret."""
        return [
            n for n, f in cls.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)
        ]

    def secret_values(self) -> list[str]:
        """The non-empty secret values, for log redaction."""
        values = []
        for name in self.secret_fields():
            value = getattr(self, name)
            if value is not None and value.get_secret_value():
                values.append(value.get_secret_value())
        return values

    def to_store(self) -> dict[str, str]:
        """Plain dict of every field (secrets revealed) for writing into a secret store."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return out


class SmtpCredential(CredentialModel):
    """An SMTP account used to send email."""

    host: str = Field(title="SMTP host", description="Server name, e.g. smtp.example.com.")
    port: int = Field(default=587, title="Port", description="587 for STARTTLS, 465 for TLS.")
    username: str | None = Field(default=None, title="Username", description="Login, if any.")
    password: SecretStr | None = Field(default=None, title="Password", description="Login secret.")
    from_address: str = Field(title="From address", description="Sender shown to recipients.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", title="Security", description="How the connection is encrypted."
    )
    verify_tls: bool = Field(
        default=True, title="Verify certificate", description="Reject invalid server certificates."
    )


class OpenAICredential(CredentialModel):
    """An OpenAI-compatible API key and endpoint."""

    api_key: SecretStr = Field(title="API key", description="Secret key for the LLM endpoint.")
    base_url: str | None = Field(
        default=None,
        title="Base URL",
        description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (default).",
    )
    organization: str | None = Field(default=None, title="Organization", description="Optional.")
    default_model: str = Field(
        default="gpt-4o-mini", title="Default model", description="Used when a node names none."
    )


class PostgresCredential(CredentialModel):
    """A PostgreSQL database login."""

    host: str = Field(title="Host", description="Database server name.")
    port: int = Field(default=5432, title="Port", description="Database server port.")
    database: str = Field(title="Database", description="Database name.")
    username: str = Field(title="Username", description="Database role.")
    password: SecretStr | None = Field(default=None, title="Password", description="Role secret.")
    sslmode: str = Field(default="prefer", title="SSL mode", description="libpq sslmode.")


class HttpAuthCredential(CredentialModel):
    """How to authenticate to an HTTP API: bearer token, basic login or an API-key header."""

    scheme: Literal["bearer", "basic", "api_key"] = Field(
        title="Scheme", description="bearer token, basic login, or an API key header."
    )
    token: SecretStr | None = Field(
        default=None, title="Token / API key", description="For bearer and api_key schemes."
    )
    username: str | None = Field(default=None, title="Username", description="For basic.")
    password: SecretStr | None = Field(default=None, title="Password", description="For basic.")
    header_name: str = Field(
        default="X-API-Key", title="Header name", description="Header for the api_key scheme."
    )

    def headers(self) -> dict[str, str]:
        """Request headers carrying this credential (basic is applied by httpx auth instead)."""
        if self.scheme == "bearer" and self.token:
            return {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        if self.scheme == "api_key" and self.token:
            return {self.header_name: self.token.get_secret_value()}
        return {}


class SlackWebhookCredential(CredentialModel):
    """A Slack incoming-webhook URL (the URL itself is the secret)."""

    url: SecretStr = Field(title="Webhook URL", description="https://hooks.slack.com/services/...")


class S3Credential(CredentialModel):
    """An S3 (or S3-compatible) bucket and access key."""

    bucket: str = Field(title="Bucket", description="Bucket name.")
    access_key_id: str = Field(title="Access key id", description="AWS access key id.")
    secret_access_key: SecretStr = Field(title="Secret access key", description="AWS secret.")
    region: str = Field(default="us-east-1", title="Region", description="AWS region.")
    endpoint_url: str | None = Field(
        default=None, title="Endpoint URL", description="For S3-compatible services (MinIO...)."
    )


class WebhookSigningCredential(CredentialModel):
    """An outgoing webhook endpoint and its Standard Webhooks signing secret."""

    url: str = Field(title="Webhook URL", description="Where signed events are POSTed.")
    secret: SecretStr = Field(
        title="Signing secret", description="Standard Webhooks secret, whsec_<base64>."
    )


class OAuthCredential(CredentialModel):
    """An account connected through OAuth2 (the portal's *Connect* button): tokens and identity.

    Written by the connect flow and by token refreshes, never typed in by hand.
    """

    provider: str = Field(title="Provider", description="OAuth app slug, e.g. google.")
    access_token: SecretStr = Field(title="Access token", description="Bearer token for the API.")
    refresh_token: SecretStr | None = Field(
        default=None, title="Refresh token", description="Gets a new access token when it expires."
    )
    expires_at: float | None = Field(
        default=None, title="Expires at", description="Unix time the access token expires."
    )
    scope: str = Field(default="", title="Scopes", description="Scopes the account granted.")
    account: str = Field(default="", title="Account", description="Who connected, e.g. an email.")
    token_type: str = Field(default="Bearer", title="Token type", description="Usually Bearer.")

    def expires_within(self, seconds: float) -> bool:
        """True when the access token is gone or expires within ``seconds``."""
        return self.expires_at is not None and self.expires_at - time.time() <= seconds

    def bearer(self) -> dict[str, str]:
        """The ``Authorization`` header carrying the access token."""
        return {"Authorization": f"Bearer {self.access_token.get_secret_value()}"}


#: credential kinds filled by the OAuth2 connect flow (the kind names the provider; ``oauth2`` is
#: any provider an agency engineer registers)
OAUTH_KINDS: tuple[str, ...] = ("google", "microsoft", "slack", "hubspot", "oauth2")

CREDENTIAL_KINDS: dict[str, type[CredentialModel]] = {
    "smtp": SmtpCredential,
    "openai": OpenAICredential,
    "postgres": PostgresCredential,
    "http_auth": HttpAuthCredential,
    "slack_webhook": SlackWebhookCredential,
    "s3": S3Credential,
    "webhook_signing": WebhookSigningCredential,
    **{kind: OAuthCredential for kind in OAUTH_KINDS},
}


def kind_model(kind: str) -> type[CredentialModel]:
    """Return the model of a credential kind, or raise ``CredentialInvalid`` naming the kinds."""
    try:
        return CREDENTIAL_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(CREDENTIAL_KINDS))
        raise CredentialInvalid(
            f"Unknown credential kind '{kind}'. Known kinds: {known}."
        ) from None


def parse_credential(kind: str, data: dict[str, object]) -> CredentialModel:
    """Validate raw values against a kind's model.

    Raises ``CredentialInvalid`` listing each bad field by name, never echoing the values.
    """
    model = kind_model(kind)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise CredentialInvalid(f"Invalid '{kind}' credential: {problems}.") from None
