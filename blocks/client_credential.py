"""``ClientCredential``: a reference to one client's credential, resolved inside tasks."""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.abstract import SecretBlock
from prefect.client.orchestration import get_client
from prefect.utilities.asyncutils import run_sync_in_worker_thread
from pydantic import Field

from agency.errors import CredentialInvalid, CredentialMissing
from agency.redaction import register_secret
from blocks.kinds import CredentialModel, kind_model, parse_credential
from blocks.stores.base import CLIENT_AREA, SecretStore
from blocks.stores.embedded import PrefectBlockSecretStore, embedded_store_key
from blocks.stores.vault import VaultSecretStore
from blocks.vault_connection import VaultConnection


class ClientCredential(SecretBlock):
    """Where a client's credential lives: client, kind, name and a store reference.

    Holds no secret value: with Vault the reference is the KV path, with the embedded store it is
    the name of a ``StoredSecret`` block. ``ClientCredential.load(name)`` resolves the reference
    and returns the typed credential model (``load_block`` returns the block itself).

    Example:
        ```python
        from blocks import ClientCredential
        smtp = ClientCredential.load("BLOCK_NAME")  # e.g. "acme-smtp-default" -> SmtpCredential
        ```
    """

    _block_type_name = "Agency Client Credential"
    _block_type_slug = "agency-client-credential"
    _logo_url = "https://www.prefect.io/favicon.png"  # type: ignore[assignment]
    _documentation_url = "https://docs.prefect.io/v3/develop/blocks"  # type: ignore[assignment]
    _description = "Reference to one client's credential in Vault or the embedded store."

    client: str = Field(title="Client", description="Client slug owning the credential.")
    kind: str = Field(title="Kind", description="Credential kind, e.g. smtp or openai.")
    name: str = Field(title="Name", description="Credential name within the kind.")
    store: Literal["vault", "prefect"] = Field(
        title="Store", description="Secret store holding the values."
    )
    reference: str = Field(
        title="Reference", description="Vault KV path, or the StoredSecret block name."
    )
    vault_connection: str | None = Field(
        default=None,
        title="Vault connection block",
        description="Name of the VaultConnection block used to read the secret.",
    )

    def secret_store(self, area: str = CLIENT_AREA) -> SecretStore:
        """The store this reference points into (``area``: another area of the same store, e.g.
        the agency's OAuth apps, reached with the same connection)."""
        if self.store == "vault":
            if not self.vault_connection:
                raise CredentialMissing(
                    self.client, self.kind, self.name, "no Vault connection is recorded"
                )
            return VaultSecretStore(VaultConnection.load(self.vault_connection), area=area)
        from agency.settings import get_settings

        return PrefectBlockSecretStore(embedded_store_key(get_settings()), area=area)

    def resolve(self) -> CredentialModel:
        """Read the values from the store and return the validated credential model.

        Secret values are registered for log redaction. Incomplete stored values raise
        ``CredentialMissing`` naming the client, kind and name (never a value).
        """
        data = self.secret_store().read(self.client, self.kind, self.name)
        secret_fields = kind_model(self.kind).secret_fields()
        register_secret(*(str(data[f]) for f in secret_fields if data.get(f)))
        try:
            return parse_credential(self.kind, data)
        except CredentialInvalid as exc:
            raise CredentialMissing(
                self.client, self.kind, self.name, f"incomplete: {exc}"
            ) from None

    @classmethod
    def load_block(cls, name: str) -> ClientCredential:
        """Return the saved block itself (the reference), without touching the secret store."""
        with get_client(sync_client=True) as api:
            document, _ = cls._get_block_document(name, client=api)
        return cls._load_from_block_document(document)

    @classmethod
    def load(  # type: ignore[override]
        cls, name: str, validate: bool = True, client: Any = None
    ) -> CredentialModel:
        """Load the reference named ``name`` and return the typed credential model."""
        return cls.load_block(name).resolve()

    @classmethod
    async def aload(  # type: ignore[override]
        cls, name: str, validate: bool = True, client: Any = None
    ) -> CredentialModel:
        """Async twin of :meth:`load`."""
        return await run_sync_in_worker_thread(cls.load, name)

    async def aread_secret(self) -> bytes:
        """Async twin of :meth:`read_secret`."""
        return await run_sync_in_worker_thread(self._read_secret)

    def _read_secret(self) -> bytes:
        return self.resolve().model_dump_json().encode()

    def read_secret(self) -> bytes:  # type: ignore[override]
        """The credential's fields as JSON bytes (Prefect's ``SecretBlock`` interface)."""
        return self._read_secret()

    async def awrite_secret(self, secret_data: bytes) -> str:
        """Async twin of :meth:`write_secret`."""
        return await run_sync_in_worker_thread(self._write_secret, secret_data)

    def _write_secret(self, secret_data: bytes) -> str:
        import json

        model = parse_credential(self.kind, json.loads(secret_data))
        ref = self.secret_store().write(self.client, self.kind, self.name, model.to_store())
        return ref.reference

    def write_secret(self, secret_data: bytes) -> str:  # type: ignore[override]
        """Validate JSON ``secret_data`` against the kind's model and write it to the store."""
        return self._write_secret(secret_data)

    async def adelete_secret(self) -> None:
        """Async twin of :meth:`delete_secret`."""
        await run_sync_in_worker_thread(self.delete_secret)

    def delete_secret(self) -> None:
        """Delete the secret values from the store (the reference block stays)."""
        self.secret_store().delete(self.client, self.kind, self.name)
