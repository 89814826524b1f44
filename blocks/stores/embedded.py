"""``PrefectBlockSecretStore``: the embedded default store, used when no Vault is configured.

Values are encrypted here, with a Fernet key held outside Prefect (``AGENCY_SECRETS_KEY`` or
``<home>/secrets.key``), before they are saved as a ``StoredSecret`` block; Prefect then
encrypts the document again at rest. So the Prefect API, even asked with
``include_secrets=true`` by a caller that has its auth string, answers only ciphertext: a client
secret is readable only by a platform process that also holds the key.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from agency.errors import CredentialMissing, SecretStoreError
from agency.keyfiles import secret_file
from agency.settings import Settings
from blocks.names import credential_block_name, read_documents_by_type
from blocks.stored_secret import StoredSecret
from blocks.stores.base import CLIENT_AREA, SecretStore, StoredSecretRef

CIPHERTEXT = "ciphertext"
_PREFIXES = {CLIENT_AREA: "secret"}


def embedded_store_key(settings: Settings) -> bytes:
    """``AGENCY_SECRETS_KEY``, else the key generated once into ``<home>/secrets.key``."""
    if settings.secrets_key is not None:
        return settings.secrets_key.get_secret_value().encode()
    path = settings.home / "secrets.key"
    return secret_file(path, lambda: Fernet.generate_key().decode()).encode()


class PrefectBlockSecretStore(SecretStore):
    """Client secrets as ``StoredSecret`` block documents holding Fernet ciphertext.

    Talks to the Prefect API: ``POST /block_documents/`` (write), ``GET
    /block_types/slug/agency-stored-secret/block_documents/name/<name>`` (read, 404 when absent),
    ``POST /block_documents/filter`` (list) and ``DELETE /block_documents/<id>`` (delete).
    ``area`` keeps platform secrets (webhook signing secrets) apart from client credentials:
    other block names, never listed with them.
    """

    store_name = "prefect"

    def __init__(self, key: bytes, area: str = CLIENT_AREA) -> None:
        self._fernet = Fernet(key)
        self.area = area
        self._prefix = _PREFIXES.get(area, f"{area.replace('/', '-')}-secret")

    def _block_name(self, client: str, kind: str, name: str) -> str:
        return f"{self._prefix}-{credential_block_name(client, kind, name)}"

    def _sealed(self, data: dict[str, str]) -> dict[str, str]:
        return {CIPHERTEXT: self._fernet.encrypt(json.dumps(data).encode()).decode()}

    def write(self, client: str, kind: str, name: str, data: dict[str, str]) -> StoredSecretRef:
        block_name = self._block_name(client, kind, name)
        StoredSecret(client=client, kind=kind, name=name, value=self._sealed(data)).save(
            block_name, overwrite=True
        )
        return StoredSecretRef(client, kind, name, self.store_name, block_name)

    def read(self, client: str, kind: str, name: str) -> dict[str, str]:
        try:
            block = StoredSecret.load(self._block_name(client, kind, name))
        except ValueError:
            raise CredentialMissing(client, kind, name) from None
        if block.client != client:  # block names can collide across dashed slugs
            raise CredentialMissing(client, kind, name)
        value = {k: str(v) for k, v in block.value.get_secret_value().items()}
        if set(value) != {CIPHERTEXT}:
            # written before values were sealed: seal it now, so no plaintext stays behind
            self.write(client, kind, name, value)
            return value
        try:
            opened = self._fernet.decrypt(value[CIPHERTEXT].encode())
        except InvalidToken:
            raise SecretStoreError(
                f"The {kind} credential '{name}' of client '{client}' was sealed with another "
                "key: AGENCY_SECRETS_KEY (or <home>/secrets.key) is not the one that wrote it."
            ) from None
        return {k: str(v) for k, v in json.loads(opened).items()}

    def list(self, client: str) -> list[StoredSecretRef]:
        with get_client(sync_client=True) as api:
            documents = read_documents_by_type(api, StoredSecret.get_block_type_slug())
        refs = []
        for doc in documents:
            data = doc.data
            if data.get("client") != client:
                continue
            if doc.name != self._block_name(client, data["kind"], data["name"]):
                continue  # another area's secret
            refs.append(
                StoredSecretRef(client, data["kind"], data["name"], self.store_name, doc.name)
            )
        return sorted(refs, key=lambda r: (r.kind, r.name))

    def delete(self, client: str, kind: str, name: str) -> None:
        with get_client(sync_client=True) as api:
            try:
                doc = api.read_block_document_by_name(
                    self._block_name(client, kind, name),
                    StoredSecret.get_block_type_slug(),
                    include_secrets=False,
                )
            except ObjectNotFound:
                raise CredentialMissing(client, kind, name) from None
            if doc.data.get("client") != client:
                raise CredentialMissing(client, kind, name)
            api.delete_block_document(doc.id)
