"""Connected accounts in nodes: a fresh token with its provider's endpoints, and one call to the
provider's API with the errors nodes raise (401/403: reconnect; 408/425/429/5xx: retry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from agency.egress import guarded_client
from agency.errors import (
    CredentialInvalid,
    PermanentNodeError,
    SecretStoreUnavailable,
    TransientNodeError,
    status_to_error,
)
from agency.redaction import redact
from blocks.kinds import OAuthCredential
from blocks.oauth import OAUTH_AREA, OAuthProvider, load_app
from blocks.registry import credential_block
from nodes._base import credential_ref, resolve_credential

_SNIPPET = 300


@dataclass(frozen=True)
class ConnectedAccount:
    """A client's connected account (an OAuth kind) with a fresh access token and its provider."""

    kind: str
    name: str
    credential: OAuthCredential
    provider: OAuthProvider

    @property
    def title(self) -> str:
        """The provider's name shown to clients, e.g. Google."""
        return self.provider.title

    def refused(self, reason: str) -> CredentialInvalid:
        """The error for a provider that refuses the token: the client must reconnect."""
        return CredentialInvalid(
            f"{self.title} refused the connection '{self.name}' ({reason}): "
            "reconnect it under Credentials."
        )

    def call(
        self, method: str, url: str, what: str, timeout: float, **options: Any
    ) -> httpx.Response:
        """Send one request to the provider's API with the bearer token (``what`` names it in
        messages); 401/403 raise ``CredentialInvalid``, 408/425/429/5xx and connection errors
        ``TransientNodeError``, any other 4xx ``PermanentNodeError``."""
        where = f"{self.title} ({what})"
        headers = {"accept": "application/json", **self.credential.bearer()}
        try:
            with guarded_client(timeout=timeout) as http:
                response = http.request(method, url, headers=headers, **options)
        except httpx.TimeoutException as exc:
            raise TransientNodeError(f"{where} timed out after {timeout:g} s.") from exc
        except httpx.TransportError as exc:
            raise TransientNodeError(f"{where} failed: {type(exc).__name__}.") from exc
        if response.status_code in (401, 403):
            raise self.refused(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            snippet = redact(response.text[:_SNIPPET])
            error = status_to_error(response.status_code)
            raise error(f"{where} answered {response.status_code}: {snippet}")
        return response


def connected_account(
    client: str, ref: str, default_kind: str, accepted: tuple[str, ...]
) -> ConnectedAccount:
    """Resolve ``ref`` (``name`` of ``default_kind``, or ``kind/name``) to a connected account of
    one of the ``accepted`` kinds, with a fresh token and its provider's endpoints."""
    kind, name = credential_ref(ref, default_kind)
    if kind not in accepted:
        raise PermanentNodeError(
            f"Credential '{ref}' is not a connected account this node can use "
            f"(accepted: {', '.join(f'{k}/<name>' for k in accepted)})."
        )
    credential = resolve_credential(client, kind, name, OAuthCredential)
    try:
        block = credential_block(client, kind, name)
        app = load_app(block.secret_store(area=OAUTH_AREA), credential.provider)
    except SecretStoreUnavailable as exc:
        raise TransientNodeError(str(exc)) from exc
    return ConnectedAccount(kind=kind, name=name, credential=credential, provider=app.provider)
