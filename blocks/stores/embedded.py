"""``PrefectBlockSecretStore``: the embedded default store, used when no Vault is configured."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from agency.errors import CredentialMissing
from blocks.names import credential_block_name, read_documents_by_type
from blocks.stored_secret import StoredSecret
from blocks.stores.base import SecretStore, StoredSecretRef


def _block_name(client: str, kind: str, name: str) -> str:
    return f"secret-{credential_block_name(client, kind, name)}"


class PrefectBlockSecretStore(SecretStore):
    """Client secrets as ``StoredSecret`` block documents, encrypted at rest by Prefect.

    Talks to the Prefect API: ``POST /block_documents/`` (write), ``GET
    /block_types/slug/agency-stored-secret/block_documents/name/<name>`` (read, 404 when absent),
    ``POST /block_documents/filter`` (list) and ``DELETE /block_documents/<id>`` (delete).
    """

    store_name = "prefect"

    def write(self, client: str, kind: str, name: str, data: dict[str, str]) -> StoredSecretRef:
        block_name = _block_name(client, kind, name)
        StoredSecret(client=client, kind=kind, name=name, value=data).save(
            block_name, overwrite=True
        )
        return StoredSecretRef(client, kind, name, self.store_name, block_name)

    def read(self, client: str, kind: str, name: str) -> dict[str, str]:
        try:
            block = StoredSecret.load(_block_name(client, kind, name))
        except ValueError:
            raise CredentialMissing(client, kind, name) from None
        if block.client != client:  # block names can collide across dashed slugs
            raise CredentialMissing(client, kind, name)
        return {k: str(v) for k, v in block.value.get_secret_value().items()}

    def list(self, client: str) -> list[StoredSecretRef]:
        with get_client(sync_client=True) as api:
            documents = read_documents_by_type(api, StoredSecret.get_block_type_slug())
        refs = []
        for doc in documents:
            data = doc.data
            if data.get("client") == client:
                refs.append(
                    StoredSecretRef(
                        client, data["kind"], data["name"], self.store_name, doc.name or ""
                    )
                )
        return sorted(refs, key=lambda r: (r.kind, r.name))

    def delete(self, client: str, kind: str, name: str) -> None:
        self.read(client, kind, name)
        with get_client(sync_client=True) as api:
            try:
                doc = api.read_block_document_by_name(
                    _block_name(client, kind, name),
                    StoredSecret.get_block_type_slug(),
                    include_secrets=False,
                )
                api.delete_block_document(doc.id)
            except ObjectNotFound:
                raise CredentialMissing(client, kind, name) from None
