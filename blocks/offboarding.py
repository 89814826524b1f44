"""Forget everything a client has in the secret store and Prefect's block storage.

Deletes each credential (values and reference), every other secret left under the client in
either area (webhook signing secrets included), and with Vault the client's policy
``client-<client>``, its AppRole and the ``vault-<client>`` VaultConnection block. Over the wire:
the stores' own delete calls, ``DELETE sys/policies/acl/<name>``, ``DELETE auth/<approle>/role/
<name>`` and ``DELETE /block_documents/<id>``.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from agency.errors import CredentialMissing
from agency.settings import Settings
from blocks.registry import delete_credential, get_secret_store, list_credentials
from blocks.stores.base import CLIENT_AREA, WEBHOOK_AREA
from blocks.vault_bootstrap import client_vault_block
from blocks.vault_connection import VaultConnection


def forget_client_secrets(settings: Settings, client: str, approle_mount: str = "approle") -> int:
    """Delete all of ``client``'s secrets and Vault identity; return how many secrets went."""
    gone = 0
    for credential in list_credentials(client):
        try:
            delete_credential(client, credential.kind, credential.name)
            gone += 1
        except CredentialMissing:
            continue
    for area in (CLIENT_AREA, WEBHOOK_AREA):
        store = get_secret_store(settings, area)
        for ref in store.list(client):
            try:
                store.delete(client, ref.kind, ref.name)
                gone += 1
            except CredentialMissing:
                continue
    if settings.uses_vault:
        from blocks.registry import vault_connection_from_settings

        vault = vault_connection_from_settings(settings).get_client()
        name = f"client-{client}"
        vault.sys.delete_acl_policy(name)
        vault.auth.approle.delete_role(name, mount_point=approle_mount)
    with get_client(sync_client=True) as api:
        try:
            doc = api.read_block_document_by_name(
                client_vault_block(client),
                VaultConnection.get_block_type_slug(),
                include_secrets=False,
            )
            api.delete_block_document(doc.id)
        except ObjectNotFound:
            pass
    return gone
