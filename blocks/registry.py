"""Store, load, list and delete client credentials: the functions nodes and services call."""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from agency.errors import CredentialMissing
from agency.settings import Settings, get_settings
from blocks.client_credential import ClientCredential
from blocks.kinds import CredentialModel, kind_model, parse_credential
from blocks.names import check_slug, credential_block_name, read_documents_by_type
from blocks.stores.base import CLIENT_AREA, SecretStore, StoredSecretRef
from blocks.stores.embedded import PrefectBlockSecretStore, embedded_store_key
from blocks.stores.vault import VaultSecretStore
from blocks.vault_bootstrap import bootstrap_client, bootstrap_vault, client_vault_block
from blocks.vault_connection import VaultConnection


def vault_connection_from_settings(settings: Settings) -> VaultConnection:
    """Build the VaultConnection described by ``AGENCY_VAULT_*`` settings."""
    return VaultConnection(
        address=settings.vault_addr or "",
        auth_method="approle" if settings.vault_role_id else "token",
        token=settings.vault_token,
        role_id=settings.vault_role_id,
        secret_id=settings.vault_secret_id,
        mount=settings.vault_mount,
        namespace=settings.vault_namespace,
        verify_tls=settings.vault_verify,
    )


def get_secret_store(settings: Settings | None = None, area: str = CLIENT_AREA) -> SecretStore:
    """Vault when ``AGENCY_VAULT_ADDR`` is set, else the embedded Prefect-block store.

    ``area`` is ``CLIENT_AREA`` for client credentials or ``WEBHOOK_AREA`` for the platform's
    webhook signing secrets, kept apart from them.
    """
    settings = settings or get_settings()
    if settings.uses_vault:
        return VaultSecretStore(vault_connection_from_settings(settings), area=area)
    return PrefectBlockSecretStore(embedded_store_key(settings), area=area)


def save_credential(
    client: str,
    kind: str,
    name: str,
    data: dict[str, Any],
    *,
    store: SecretStore | None = None,
    settings: Settings | None = None,
) -> ClientCredential:
    """Validate ``data`` against the kind's model, write it to the store, save the reference.

    Validation happens before anything is written. With Vault, the VaultConnection block named
    by ``settings.vault_block`` is saved too so workers can reach the same Vault.
    """
    settings = settings or get_settings()
    check_slug(client, "client slug")
    check_slug(name, "credential name")
    model = parse_credential(kind, data)
    vault_block = None
    client_connection = (
        _client_connection(client) if store is None and settings.uses_vault else None
    )
    if client_connection is not None:
        # the client's own AppRole (from `agency vault bootstrap`): its policy reaches only
        # clients/<client>/*, for writing here and for reading in the client's runs
        store, vault_block = VaultSecretStore(client_connection), client_vault_block(client)
    store = store or get_secret_store(settings)
    if isinstance(store, VaultSecretStore) and vault_block is None:
        vault_block = settings.vault_block
        store.connection.save(vault_block, overwrite=True)
    ref = store.write(client, kind, name, model.to_store())
    block = ClientCredential(
        client=client,
        kind=kind,
        name=name,
        store=store.store_name,  # type: ignore[arg-type]
        reference=ref.reference,
        vault_connection=vault_block,
    )
    block.save(credential_block_name(client, kind, name), overwrite=True)
    return block


def _client_connection(client: str) -> VaultConnection | None:
    try:
        return VaultConnection.load(client_vault_block(client))
    except ValueError:
        return None


def onboard_client_vault(settings: Settings, client: str) -> VaultConnection:
    """Bootstrap Vault for ``client`` with the platform's token: policy + AppRole, saved as the
    VaultConnection block ``vault-<client>`` that the client's credentials then use."""
    admin = vault_connection_from_settings(settings)
    hvac_client = admin.get_client()
    bootstrap_vault(hvac_client, settings.vault_mount)
    role = bootstrap_client(hvac_client, client, settings.vault_mount)
    connection = VaultConnection(
        address=admin.address,
        auth_method="approle",
        role_id=role.role_id,
        secret_id=SecretStr(role.secret_id),
        mount=admin.mount,
        namespace=admin.namespace,
        verify_tls=admin.verify_tls,
    )
    connection.save(client_vault_block(client), overwrite=True)
    return connection


def credential_block(client: str, kind: str, name: str) -> ClientCredential:
    """The saved reference of a client's credential; ``CredentialMissing`` if absent."""
    try:
        block = ClientCredential.load_block(credential_block_name(client, kind, name))
    except ValueError:
        raise CredentialMissing(client, kind, name) from None
    if (block.client, block.kind, block.name) != (client, kind, name):
        raise CredentialMissing(client, kind, name)
    return block


def load_credential(client: str, kind: str, name: str) -> CredentialModel:
    """Resolve a client's credential inside a task; raise ``CredentialMissing`` if absent."""
    kind_model(kind)
    return credential_block(client, kind, name).resolve()


def list_credentials(client: str) -> list[ClientCredential]:
    """Every credential reference saved for ``client`` (no values)."""
    with get_client(sync_client=True) as api:
        documents = read_documents_by_type(api, ClientCredential.get_block_type_slug())
    blocks = [ClientCredential.model_validate(doc.data) for doc in documents]
    return sorted((b for b in blocks if b.client == client), key=lambda b: (b.kind, b.name))


def delete_credential(client: str, kind: str, name: str) -> StoredSecretRef:
    """Delete the stored values and the reference; raise ``CredentialMissing`` if absent."""
    block_name = credential_block_name(client, kind, name)
    try:
        block = ClientCredential.load_block(block_name)
    except ValueError:
        raise CredentialMissing(client, kind, name) from None
    store = block.secret_store()
    try:
        store.delete(client, kind, name)
    except CredentialMissing:
        pass  # values already gone: still remove the dangling reference
    with get_client(sync_client=True) as api:
        try:
            doc = api.read_block_document_by_name(
                block_name, ClientCredential.get_block_type_slug(), include_secrets=False
            )
            api.delete_block_document(doc.id)
        except ObjectNotFound:
            pass
    return StoredSecretRef(client, kind, name, block.store, block.reference)
