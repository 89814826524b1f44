"""The ``VaultConnection`` block: how to reach and authenticate to Vault (or OpenBao)."""

from __future__ import annotations

from typing import Literal

import hvac
import requests
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from agency.errors import SecretStorePermissionDenied, SecretStoreUnavailable


class VaultConnection(Block):
    """Connection to a HashiCorp Vault (or OpenBao) server with token or AppRole auth.

    Example:
        ```python
        from blocks import VaultConnection
        vault = VaultConnection.load("BLOCK_NAME")
        client = vault.get_client()
        ```
    """

    _block_type_name = "Agency Vault Connection"
    _block_type_slug = "agency-vault-connection"
    _logo_url = "https://www.vaultproject.io/img/favicons/favicon-192x192.png"  # type: ignore[assignment]
    _documentation_url = "https://hvac.readthedocs.io/en/stable/"  # type: ignore[assignment]
    _description = "Address and credentials of the Vault holding client secrets (KV v2)."

    address: str = Field(title="Address", description="Vault URL, e.g. https://vault:8200.")
    auth_method: Literal["token", "approle"] = Field(
        default="token", title="Auth method", description="token or approle."
    )
    token: SecretStr | None = Field(
        default=None, title="Token", description="Vault token, for the token auth method."
    )
    role_id: str | None = Field(default=None, title="Role id", description="AppRole role id.")
    secret_id: SecretStr | None = Field(
        default=None, title="Secret id", description="AppRole secret id."
    )
    approle_mount: str = Field(
        default="approle", title="AppRole mount", description="Mount path of the AppRole auth."
    )
    mount: str = Field(default="secret", title="KV mount", description="KV v2 mount point.")
    namespace: str | None = Field(
        default=None, title="Namespace", description="Vault Enterprise namespace, if any."
    )
    verify_tls: bool = Field(
        default=True, title="Verify TLS", description="Verify the server certificate."
    )
    ca_cert_path: str | None = Field(
        default=None, title="CA certificate", description="Path of a CA bundle to trust."
    )

    def get_client(self) -> hvac.Client:
        """Return an authenticated ``hvac.Client``.

        AppRole: ``POST /v1/auth/<approle_mount>/login`` with role_id and secret_id (200 gives a
        client token). Raises ``SecretStoreUnavailable`` if Vault cannot be reached and
        ``SecretStorePermissionDenied`` if it refuses the login; neither names the token.
        """
        verify: bool | str = self.ca_cert_path or self.verify_tls
        token = self.token.get_secret_value() if self.token else None
        client = hvac.Client(url=self.address, token=token, namespace=self.namespace, verify=verify)
        if self.auth_method == "approle":
            if not (self.role_id and self.secret_id):
                raise SecretStorePermissionDenied(
                    f"Vault at {self.address}: AppRole auth needs role_id and secret_id."
                )
            try:
                client.auth.approle.login(
                    role_id=self.role_id,
                    secret_id=self.secret_id.get_secret_value(),
                    mount_point=self.approle_mount,
                )
            except requests.exceptions.RequestException:
                raise SecretStoreUnavailable(
                    f"Vault at {self.address} is unreachable (AppRole login)."
                ) from None
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
                raise SecretStorePermissionDenied(
                    f"Vault at {self.address} refused the AppRole login "
                    f"(auth/{self.approle_mount}/login)."
                ) from None
        return client
